"""SOLOv2 (Wang et al., NeurIPS 2020) and RS-SOLOv2 (Oksuz et al., ICCV 2021) as Detectron2
meta-architectures: heads, grid targets, Matrix NMS, the stock model and the RS one."""

from .head import SOLOv2InstanceHead, SOLOv2MaskFeatHead, coord_channels, solov2_level_features
from .matrix_nms import matrix_nms, points_nms
from .meta_arch import DICE_EPS, SOLOv2, solov2_postprocess
from .rs_solov2 import RSSOLOv2
from .targets import SOLOv2Targets, center_regions, solov2_targets

__all__ = [
    "DICE_EPS",
    "RSSOLOv2",
    "SOLOv2",
    "SOLOv2InstanceHead",
    "SOLOv2MaskFeatHead",
    "SOLOv2Targets",
    "center_regions",
    "coord_channels",
    "matrix_nms",
    "points_nms",
    "solov2_level_features",
    "solov2_postprocess",
    "solov2_targets",
]
