"""Heads of the RS dense detectors: the ATSS / PAA head (RS-ATSS, RS-PAA), RetinaNet's towers with
a learnable scale per level, and the registry through which a yacs config names its head."""

from typing import List

import torch
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.utils.registry import Registry

from ..registry import registered

__all__ = ["DENSE_HEAD_REGISTRY", "ScaledRetinaNetHead", "build_dense_head"]

DENSE_HEAD_REGISTRY = Registry("DENSE_HEAD")
DENSE_HEAD_REGISTRY.__doc__ = """
Heads of :class:`~rs_detectron2.modeling.RSDenseDetector`, by the value of
``cfg.MODEL.RS.DENSE.HEAD``. An entry is called as ``head(cfg, input_shapes)`` (a ``@configurable``
class, whose ``from_config`` reads ``MODEL.RETINANET``) and returns a module mapping per-level
features to per-level ``(class logits, box deltas)``.
"""
# Detectron2's own head, under its own name (the yacs default)
DENSE_HEAD_REGISTRY.register(RetinaNetHead)


@DENSE_HEAD_REGISTRY.register()
class ScaledRetinaNetHead(RetinaNetHead):
    """:class:`RetinaNetHead` (two conv towers, here with GN) whose box output on each level is
    multiplied by a learnable scalar initialised to 1 (mmcv ``Scale``), as the ATSS and PAA heads
    of mmdet. RS-ATSS / RS-PAA use it without a centerness or IoU branch: its outputs are only
    the class logits and the box deltas, exactly like :class:`RetinaNetHead`. Its tower convs
    have no bias when they are normalised, as mmcv's ``ConvModule`` builds them (Detectron2's
    :class:`RetinaNetHead` keeps a bias that the norm cancels but weight decay still acts on).
    """

    @configurable
    def __init__(
        self, *, input_shape: List[ShapeSpec], norm="GN", tower_conv_bias: bool = False, **kwargs
    ):
        """
        Args:
            input_shape: one ShapeSpec per level (the number of scales is its length).
            norm: normalisation of the tower convs (GN(32) in ATSS / PAA).
            tower_conv_bias: keep the bias of the normalised tower convs (Detectron2); without
                a norm they always keep it.
            kwargs: the other arguments of :class:`RetinaNetHead` (``num_classes``,
                ``num_anchors``, ``conv_dims``, ``prior_prob``).
        """
        super().__init__(input_shape=input_shape, norm=norm, **kwargs)
        if norm and not tower_conv_bias:
            for tower in (self.cls_subnet, self.bbox_subnet):
                for layer in tower:
                    if isinstance(layer, nn.Conv2d):
                        layer.bias = None
        self.scales = nn.Parameter(torch.ones(len(input_shape)))

    def forward(self, features: List[Tensor]):
        """
        Args:
            features: per-level (N, C, Hi, Wi) feature maps, high to low resolution.
        Returns:
            logits: per-level (N, A*K, Hi, Wi); bbox_reg: per-level (N, A*4, Hi, Wi), scaled.
        """
        assert len(features) == self._num_features
        logits, bbox_reg = [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_score(self.cls_subnet(feature)))
            bbox_reg.append(self.bbox_pred(self.bbox_subnet(feature)) * self.scales[level])
        return logits, bbox_reg


def build_dense_head(cfg, input_shapes: List[ShapeSpec]) -> nn.Module:
    """The dense head named by ``cfg.MODEL.RS.DENSE.HEAD``.

    Args:
        cfg: a yacs config with :func:`rs_detectron2.config.add_rs_config`'s keys.
        input_shapes: one ShapeSpec per input level (``MODEL.RETINANET.IN_FEATURES``).
    Raises:
        ValueError: the name is not in :data:`DENSE_HEAD_REGISTRY`.
    """
    key = "MODEL.RS.DENSE.HEAD"
    return registered(DENSE_HEAD_REGISTRY, cfg.MODEL.RS.DENSE.HEAD, key)(cfg, input_shapes)
