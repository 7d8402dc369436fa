"""Backbone pieces of the authors' mmdetection models: the norm of their torchvision ResNets (BN
statistics frozen, affine trained) and the FPN top block without a ReLU before P7."""

from .blocks import LastLevelP6P7NoReLU
from .norm import FrozenStatsBatchNorm2d

__all__ = ["FrozenStatsBatchNorm2d", "LastLevelP6P7NoReLU"]
