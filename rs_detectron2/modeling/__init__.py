"""RS heads plugged into Detectron2 models by swapping a class and keeping its arguments."""

from .assigners import ATSSAssigner, IoUAssigner, PAAAssigner
from .meta_arch import RSRetinaNet, ScaledRetinaNetHead, score_voting
from .proposal_generator import RSRPN
from .quality import regression_quality
from .roi_heads import (
    RSCascadeROIHeads,
    RSFastRCNNOutputLayers,
    RSMaskRCNNConvUpsampleHead,
    RSStandardROIHeads,
)

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
]
