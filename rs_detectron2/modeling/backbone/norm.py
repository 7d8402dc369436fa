"""Batch norm as the authors' backbone runs it: running statistics frozen, affine trainable."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrozenStatsBatchNorm2d"]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises with its running statistics and never updates them,
    in training mode too, while its ``weight`` and ``bias`` stay trainable.

    This is the R-50 the RS paper's models were trained with (torchvision's ResNet-50 as
    mmdetection runs it, ``norm_eval=True`` with trainable BN affine; docs/models.md, "The authors'
    backbone (torchvision R-50)"). Detectron2's ``FrozenBN`` freezes
    the affine too; ``"BN"`` updates the statistics. Pass the class as ``norm=`` to Detectron2's
    ``BasicStem`` / ``ResNet.make_default_stages`` (a callable that takes the channel count);
    ``ResNet.freeze`` still turns it into ``FrozenBN`` in the frozen stages.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W) with the running mean / variance, then scale and shift
        by ``weight`` / ``bias``; returns a tensor of the same shape. Gradients flow to ``x``,
        ``weight`` and ``bias``; the running statistics are left as they are."""
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=False,
            momentum=0.0,
            eps=self.eps,
        )
