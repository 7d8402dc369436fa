from .dense_head import ScaledRetinaNetHead
from .rs_retinanet import RSRetinaNet
from .score_voting import score_voting

__all__ = ["RSRetinaNet", "ScaledRetinaNetHead", "score_voting"]
