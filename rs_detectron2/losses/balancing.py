"""Task balancing of the ranking losses' heads: the RS paper's tuning-free balance, every iteration
(Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation", ICCV 2021,
Sec. 4.2), and the aLRP paper's self-balance, once per epoch (Oksuz et al., "A Ranking-based,
Balanced Loss Function Unifying Classification and Localisation in Object Detection", NeurIPS 2020).
"""

import math
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from .pool import distributed_world_size

__all__ = ["EpochSelfBalance", "balance_to"]


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


class EpochSelfBalance(nn.Module):
    """The aLRP paper's self-balance (SB) weight ``w`` of a localisation loss, kept in buffers.

    ``w`` starts at ``init_weight``; after every ``period`` calls of :meth:`update_balance` it
    becomes ``(mean loss_cls + mean loss_loc) / mean loss_loc`` over that period's values
    (unchanged if the mean localisation loss is 0 or not finite). The weight (``balance_weight``),
    the running sums (``sum_cls``, ``sum_loc``), the call count (``count``) and ``period`` are
    persistent buffers of the module: saved in checkpoints, they survive a resume (a checkpoint's
    ``period`` wins over the argument). With ``sync`` and ``torch.distributed`` initialised, the
    sums are all-reduced over ``group`` at the period boundary, so every process gets the same
    ``w``; every process must then call :meth:`update_balance` the same number of times.

    Args:
        period: calls between updates (one epoch in iterations).
        init_weight: the initial weight, finite and > 0 (50 in the aLRP paper).
        group: process group of the all-reduce (None: every process).
        sync: all-reduce the sums across processes at the period boundary.
    """

    def __init__(
        self, period: int, init_weight: float, group: Optional[object] = None, sync: bool = True
    ):
        super().__init__()
        name = type(self).__name__
        if int(period) != period or period < 1:
            raise ValueError(f"{name}: period must be a positive integer, got {period}")
        if not (math.isfinite(init_weight) and init_weight > 0):
            raise ValueError(f"{name}: init_weight must be finite and > 0, got {init_weight}")
        self.group = group
        self.sync = bool(sync)
        f64 = torch.float64
        self.register_buffer("balance_weight", torch.tensor(float(init_weight), dtype=f64))
        self.register_buffer("sum_cls", torch.zeros((), dtype=f64))
        self.register_buffer("sum_loc", torch.zeros((), dtype=f64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("period", torch.tensor(int(period), dtype=torch.int64))
        # Host copies of count and period, read from the buffers once (one host sync after
        # construction or loading), so that the period boundary costs no sync per call.
        self._host_count: Optional[int] = None
        self._host_period: Optional[int] = None
        self.register_load_state_dict_post_hook(_forget_host_counts)

    @torch.no_grad()
    def update_balance(self, loss_cls: torch.Tensor, loss_loc: torch.Tensor) -> None:
        """Accumulate one call's 0-dim values; at the end of a period, set the weight."""
        if self._host_count is None or self._host_period is None:
            counts = torch.stack([self.count, self.period])
            self._host_count, self._host_period = (int(v) for v in counts.tolist())
        self.sum_cls += loss_cls.detach().to(self.sum_cls.device, torch.float64)
        self.sum_loc += loss_loc.detach().to(self.sum_loc.device, torch.float64)
        self.count += 1
        self._host_count += 1
        if self._host_count < self._host_period:
            return
        sums = torch.stack([self.sum_cls, self.sum_loc])
        if self.sync and distributed_world_size(self.group) > 1:
            dist.all_reduce(sums, group=self.group)
        # (mean cls + mean loc) / mean loc; every process has the same count, so sums suffice.
        new = (sums[0] + sums[1]) / sums[1]
        usable = torch.isfinite(new) & (sums[1] > 0)
        self.balance_weight.copy_(torch.where(usable, new, self.balance_weight))
        self.sum_cls.zero_()
        self.sum_loc.zero_()
        self.count.zero_()
        self._host_count = 0


def _forget_host_counts(module: EpochSelfBalance, incompatible_keys) -> None:
    """After load_state_dict the buffers may hold another count/period: re-read them."""
    module._host_count = None
    module._host_period = None
