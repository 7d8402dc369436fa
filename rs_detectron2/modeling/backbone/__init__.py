"""Backbone pieces for the authors' ResNet-50 (torchvision weights, BN statistics frozen)."""

from .norm import FrozenStatsBatchNorm2d

__all__ = ["FrozenStatsBatchNorm2d"]
