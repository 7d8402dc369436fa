from .dense_head import DENSE_HEAD_REGISTRY, ScaledRetinaNetHead, build_dense_head
from .rs_dense_detector import RSDenseDetector, RSRetinaNet
from .score_voting import score_voting

__all__ = [
    "DENSE_HEAD_REGISTRY",
    "RSDenseDetector",
    "RSRetinaNet",
    "ScaledRetinaNetHead",
    "build_dense_head",
    "score_voting",
]
