"""Gradient clipping by global norm, as a Detectron2 trainer hook.

The RS paper's recipes train without clipping; this is for settings that need it, such as the tiny
from-scratch CPU RS-Cascade R-CNN (configs/quick_schedules/rs_cascade_rcnn_tiny.py). A LazyConfig
turns it on with ``train.clip_gradients = dict(max_norm=10.0, norm_type=2.0)``; train_net.py then
registers :class:`ClipGradNorm`.

Detectron2's own ``SOLVER.CLIP_GRADIENTS`` (``detectron2.solver.build.maybe_add_gradient_clipping``)
clips the norm of each parameter tensor separately, which is not the global norm over all
parameters. Its trainers call ``after_backward`` on every hook between the backward pass and the
optimiser step, which is where this hook clips.
"""

import math
from typing import Optional

import torch

from detectron2.engine import HookBase

__all__ = ["ClipGradNorm"]


class ClipGradNorm(HookBase):
    """Scales all gradients of the trainer's optimiser together so that their global p-norm is at
    most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``): the update direction is kept and only
    its length is bounded.

    Args:
        max_norm: the largest allowed global norm (> 0).
        norm_type: the p of the p-norm (2 = Euclidean; ``inf`` = largest absolute value).

    Under Detectron2's ``AMPTrainer`` the gradients are unscaled first (``GradScaler.unscale_``), so
    the norm is that of the true gradients; the scaler's ``step`` then does not unscale them again.
    The norm before clipping of the last step is kept in ``last_norm`` (a 0-dim tensor, never read
    back to the host here).
    """

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        if not (max_norm > 0 and not math.isinf(max_norm)):
            raise ValueError(f"max_norm must be a positive finite number, got {max_norm}")
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.last_norm: Optional[torch.Tensor] = None

    def after_backward(self):
        optimizer = self.trainer.optimizer
        scaler = getattr(self.trainer, "grad_scaler", None)
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if params:
            self.last_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type)
