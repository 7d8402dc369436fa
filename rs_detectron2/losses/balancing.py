"""Tuning-free task balancing of the RS paper ("self-balancing", Oksuz et al. 2021, Sec. 4.2)."""

import torch

__all__ = ["balance_to"]


def balance_to(loss: torch.Tensor, reference: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale ``loss`` so that its value equals ``reference``'s (no gradient through the scale).

    Returns ``loss * lambda`` with ``lambda = reference / loss`` computed on detached values, so the
    gradient of the result is ``lambda * d(loss)``. The RS heads use it every iteration with
    ``reference = loss_rank + loss_sort`` for the box and mask losses.

    Guards (no host synchronisation): if the loss value is below ``eps`` or not finite, lambda is 0
    (a zero or exact loss carries no useful scale; a non-finite loss then shows up as NaN in the
    result, where the trainer's finiteness check reports it). Both arguments are 0-dim tensors.
    """
    value = loss.detach()
    ref = reference.detach()
    usable = torch.isfinite(value) & (value.abs() > eps)
    scale = torch.where(usable, ref / torch.where(usable, value, torch.ones_like(value)), 0.0)
    return loss * scale
