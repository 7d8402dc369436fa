"""YOLACT and RS-YOLACT (Bolya et al., ICCV 2019; Oksuz et al., ICCV 2021, Sec. 6.2): the
meta-architectures, their head, protonet, FPN, mask assembly and Fast NMS."""

from .assembly import assemble_masks, crop_masks, gt_masks_at, relative_boxes
from .fast_nms import batched_pairwise_iou, fast_nms
from .fpn import YOLACTFPN, pyramid_strides
from .head import ProtoNet, YOLACTHead
from .meta_arch import YOLACT, Positives, YOLACTBatch, yolact_postprocess
from .rs_yolact import RSYOLACT

__all__ = [
    "YOLACT",
    "RSYOLACT",
    "YOLACTHead",
    "ProtoNet",
    "YOLACTFPN",
    "Positives",
    "YOLACTBatch",
    "assemble_masks",
    "batched_pairwise_iou",
    "crop_masks",
    "fast_nms",
    "gt_masks_at",
    "pyramid_strides",
    "relative_boxes",
    "yolact_postprocess",
]
