"""RS heads plugged into Detectron2 models by swapping a class and keeping its arguments."""

from .proposal_generator import RSRPN
from .roi_heads import (
    RSCascadeROIHeads,
    RSFastRCNNOutputLayers,
    RSMaskRCNNConvUpsampleHead,
    RSStandardROIHeads,
)
from .rs_head_losses import regression_quality, rs_detection_losses

__all__ = [
    "RSRPN",
    "RSFastRCNNOutputLayers",
    "RSMaskRCNNConvUpsampleHead",
    "RSStandardROIHeads",
    "RSCascadeROIHeads",
    "regression_quality",
    "rs_detection_losses",
]
