"""Logging what a head computes besides its losses: the ranking loss's own scalars and the
unweighted localisation loss of the positives.

Both go through :func:`rs_detectron2.utils.scalars.put_tensor_scalar`, so under
:class:`rs_detectron2.engine.FiniteLossGuard` they are read to the host together with the loss
values, in the guard's single synchronisation per step.
"""

import torch

from ..losses import RankingLoss
from ..utils.scalars import put_tensor_scalar

__all__ = ["put_mean_loss_scalar", "put_ranking_loss_scalars"]


def put_ranking_loss_scalars(ranking_loss: RankingLoss, prefix: str) -> None:
    """Put every :meth:`RankingLoss.scalars` entry (e.g. aLRP's self-balance weight) into the
    current event storage as ``{prefix}/{name}``; nothing for losses without any (RS)."""
    for name, value in ranking_loss.scalars().items():
        put_tensor_scalar(f"{prefix}/{name}", value)


def put_mean_loss_scalar(name: str, losses: torch.Tensor) -> None:
    """Log the plain mean of a head's per-positive localisation losses as the scalar ``name``.

    This is the value a balanced box or mask loss hides: RS rescales the score-weighted mean so
    that it equals rank + sort, whereas this mean is neither weighted nor rescaled (e.g. the mean
    GIoU loss ``1 - mean GIoU`` in [0, 2], or the mean Dice loss in [0, 1]).

    Args:
        name: the scalar's name, e.g. ``"rpn/giou_loss"`` (the storage's name scope is
            prepended).
        losses: (P,) loss of each of the P positives; detached here. With P == 0 nothing is
            logged (the mean of nothing would be NaN).
    """
    if losses.numel() == 0:
        return
    put_tensor_scalar(name, losses.detach().float().mean())
