"""Backbone pieces of the authors' mmdetection models: the norm of their torchvision ResNets (BN
statistics frozen, affine trained), the FPN top block without a ReLU before P7, and the yacs
builders of the RS-ATSS / RS-PAA and RS-FCOS backbones (registered in Detectron2's
``BACKBONE_REGISTRY``)."""

from .blocks import LastLevelP6P7NoReLU
from .fpn import build_fcos_resnet_fpn_backbone, build_rs_atss_resnet_fpn_backbone
from .norm import FrozenStatsBatchNorm2d

__all__ = [
    "FrozenStatsBatchNorm2d",
    "LastLevelP6P7NoReLU",
    "build_fcos_resnet_fpn_backbone",
    "build_rs_atss_resnet_fpn_backbone",
]
