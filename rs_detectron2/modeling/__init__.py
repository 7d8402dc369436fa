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

# Dense (one-stage) RS detectors and their anchor assigners.
from .assigners import ATSSAssigner, IoUAssigner, PAAAssigner  # noqa: E402
from .meta_arch import RSRetinaNet, ScaledRetinaNetHead, score_voting  # noqa: E402

__all__ += [
    "RSRetinaNet",
    "ScaledRetinaNetHead",
    "score_voting",
    "IoUAssigner",
    "ATSSAssigner",
    "PAAAssigner",
]
