"""RS heads plugged into Detectron2 models by swapping a class and keeping its arguments."""

from .anchor_validity import valid_anchor_mask
from .assigners import ATSSAssigner, IoUAssigner, PAAAssigner
from .backbone import FrozenStatsBatchNorm2d, LastLevelP6P7NoReLU
from .matcher import MinIoULowQualityMatcher
from .meta_arch import RSRetinaNet, ScaledRetinaNetHead, score_voting
from .proposal_generator import RSRPN
from .quality import regression_quality
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
    "RSRPN",
    "RSFastRCNNOutputLayers",
    "RSMaskRCNNConvUpsampleHead",
    "RSStandardROIHeads",
    "RSCascadeROIHeads",
    "RSRetinaNet",
    "ScaledRetinaNetHead",
    "score_voting",
    "IoUAssigner",
    "ATSSAssigner",
    "PAAAssigner",
    "regression_quality",
    "FrozenStatsBatchNorm2d",
    "valid_anchor_mask",
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
