"""RS heads plugged into Detectron2 models by swapping a class and keeping its arguments.

Importing this package registers what yacs configs name: the RS heads in Detectron2's registries
(``RSDenseDetector`` / ``RSRetinaNet``, ``RSRPN``, ``RSStandardROIHeads``, ``RSCascadeROIHeads``,
``RSMaskRCNNConvUpsampleHead``, ``build_rs_atss_resnet_fpn_backbone``,
``build_fcos_resnet_fpn_backbone``) and the RS choices in this package's
(:data:`RANKING_LOSS_REGISTRY`, :data:`ASSIGNER_REGISTRY`, :data:`DENSE_HEAD_REGISTRY`).
"""

from .anchor_validity import valid_anchor_mask
from .assigners import (
    ASSIGNER_REGISTRY,
    ATSSAssigner,
    FCOSAssigner,
    IoUAssigner,
    PAAAssigner,
    build_assigner,
)
from .backbone import (
    FrozenStatsBatchNorm2d,
    LastLevelP6P7NoReLU,
    build_fcos_resnet_fpn_backbone,
    build_rs_atss_resnet_fpn_backbone,
)
from .masks import crop_canvas_masks, rasterize_gt_masks, resize_full_image_masks
from .matcher import MinIoULowQualityMatcher
from .meta_arch import (
    DENSE_HEAD_REGISTRY,
    RSDenseDetector,
    RSRetinaNet,
    ScaledRetinaNetHead,
    build_dense_head,
    score_voting,
)
from .proposal_generator import RSRPN
from .quality import regression_quality
from .ranking_loss import RANKING_LOSS_REGISTRY, build_ranking_loss
from .roi_heads import (
    GTProposalCascadeROIHeads,
    RSCascadeROIHeads,
    RSFastRCNNOutputLayers,
    RSMaskRCNNConvUpsampleHead,
    RSStandardROIHeads,
)
from .solov2 import (
    RSSOLOv2,
    SOLOv2,
    SOLOv2InstanceHead,
    SOLOv2MaskFeatHead,
    matrix_nms,
    points_nms,
    solov2_targets,
)
from .yolact import RSYOLACT, YOLACT, YOLACTFPN, ProtoNet, YOLACTBatch, YOLACTHead, fast_nms

__all__ = [
    "RANKING_LOSS_REGISTRY",
    "build_ranking_loss",
    "ASSIGNER_REGISTRY",
    "build_assigner",
    "DENSE_HEAD_REGISTRY",
    "build_dense_head",
    "build_rs_atss_resnet_fpn_backbone",
    "build_fcos_resnet_fpn_backbone",
    "RSRPN",
    "RSFastRCNNOutputLayers",
    "RSMaskRCNNConvUpsampleHead",
    "RSStandardROIHeads",
    "RSCascadeROIHeads",
    "RSDenseDetector",
    "RSRetinaNet",
    "ScaledRetinaNetHead",
    "score_voting",
    "IoUAssigner",
    "ATSSAssigner",
    "PAAAssigner",
    "FCOSAssigner",
    "regression_quality",
    "FrozenStatsBatchNorm2d",
    "valid_anchor_mask",
    "rasterize_gt_masks",
    "resize_full_image_masks",
    "crop_canvas_masks",
    "LastLevelP6P7NoReLU",
    "MinIoULowQualityMatcher",
    "GTProposalCascadeROIHeads",
    "SOLOv2",
    "RSSOLOv2",
    "SOLOv2InstanceHead",
    "SOLOv2MaskFeatHead",
    "matrix_nms",
    "points_nms",
    "solov2_targets",
    "YOLACT",
    "YOLACTBatch",
    "RSYOLACT",
    "YOLACTHead",
    "ProtoNet",
    "YOLACTFPN",
    "fast_nms",
]
