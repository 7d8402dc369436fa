"""The interface between detection heads and ranking-based losses.

A head that trains its classifier with a ranking loss takes the loss as an argument (an object
chosen in the config, e.g. ``ranking_loss=L(RankSortLoss)(delta=0.5)``) and calls it once per
iteration through :meth:`RankingLoss.head_losses`, with the whole ranking pool and its positives'
boxes. The loss object decides its classification terms *and* how the box loss and any auxiliary
loss (a mask loss) are weighted against them: RS balances them to its own value every iteration
(Oksuz et al., ICCV 2021, Sec. 4); other ranking losses use a constant weight or a balance kept
across iterations. So a head never changes when another ranking loss is swapped in by config.
"""

import contextlib
import math
from typing import Dict, Tuple

import torch
from torch import nn

__all__ = ["RankingLoss", "autocast_off", "check_delta", "flat_inputs"]


class RankingLoss(nn.Module):
    """Base class of the ranking losses the RS heads take as their ``ranking_loss`` argument.

    Subclasses implement :meth:`head_losses` and :meth:`balance_auxiliary`. They are modules, so a
    loss that keeps state across iterations can hold it in buffers (saved with the model).
    """

    def head_losses(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        pos_pred_boxes: torch.Tensor,
        pos_gt_boxes: torch.Tensor,
        pos_box_weights: torch.Tensor,
        *,
        prefix: str,
    ) -> Dict[str, torch.Tensor]:
        """Every training loss of one head.

        Args:
            logits: classification logits of the whole ranking pool, any shape (e.g. (R, K)).
            targets: same shape: ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive, the value
                being its localisation quality (the IoU of its regressed box with its ground
                truth). Losses with binary labels use ``targets > 0``.
            pos_pred_boxes: (P, 4) XYXY decoded boxes of the P positives (with gradient), in the
                order of ``targets.flatten() > 0``.
            pos_gt_boxes: (P, 4) their ground-truth boxes.
            pos_box_weights: (P,) detached weights of the positives' box losses (their max-class
                scores).
            prefix: the head's key prefix, e.g. ``"loss_rpn"``.
        Returns:
            dict of named 0-dim losses, every key starting with ``prefix``; their sum is what the
            head contributes to the total loss.
        """
        raise NotImplementedError

    def balance_auxiliary(
        self, loss: torch.Tensor, head_losses: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Weight an auxiliary loss of the same head (e.g. the mask loss of Mask R-CNN).

        Args:
            loss: 0-dim auxiliary loss, unweighted.
            head_losses: what :meth:`head_losses` returned for the head this loss belongs to.
        Returns:
            the weighted 0-dim loss.
        """
        raise NotImplementedError

    def scalars(self) -> Dict[str, torch.Tensor]:
        """Named 0-dim tensors worth logging besides the losses (e.g. a balance weight kept across
        iterations); none by default.

        Returns:
            dict name -> detached 0-dim tensor.
        """
        return {}


def check_delta(delta: float) -> float:
    """``delta`` as a float if it is finite and >= 0 (the smoothed step's half-width), else raise
    ValueError."""
    delta = float(delta)
    if not (delta >= 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be finite and >= 0, got {delta}")
    return delta


def autocast_off(device_type: str):
    """A context that disables autocast on ``device_type``; ranking losses run in float32/64."""
    enabled = torch.amp.is_autocast_available(device_type)
    return (
        torch.autocast(device_type=device_type, enabled=False)
        if enabled
        else contextlib.nullcontext()
    )


def flat_inputs(
    logits: torch.Tensor, targets: torch.Tensor, name: str
) -> Tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Detached, flattened ``(s, y, out_dtype)`` of a ranking loss's inputs.

    ``s``: the logits promoted to at least float32 (``out_dtype``); ``y``: the targets in
    ``out_dtype`` (float64 targets stay float64). ``name`` prefixes the error messages.

    Raises:
        TypeError: for non floating point logits. ValueError: when the shapes differ.
    """
    if not logits.is_floating_point():
        raise TypeError(f"{name}: logits must be floating point, got {logits.dtype}")
    if logits.shape != targets.shape:
        raise ValueError(
            f"{name}: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            "must have the same shape"
        )
    out_dtype = torch.promote_types(logits.dtype, torch.float32)
    s = logits.detach().reshape(-1).to(out_dtype)
    y = targets.detach().reshape(-1)
    y = y.to(torch.float64) if y.dtype == torch.float64 else y.to(out_dtype)
    return s, y, out_dtype
