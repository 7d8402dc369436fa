"""Rank & Sort (RS) loss: exact values and the identity-update gradient, without a loop over positives.

Notation (Oksuz et al., ICCV 2021; ``rs_spec.md`` sections 1.2-1.6). ``s`` are logits, ``y`` targets;
P = {y > 0} (positives, ``y`` is their localisation quality), N = {y == 0} (negatives), ``y < 0`` is
ignored. ``H`` is the step function smoothed linearly on [-delta, delta] (the hard step ``[x >= 0]``
when ``delta == 0``). For a positive i, with ``H_ik = H(s_k - s_i)``:

    R_i   = sum_{k in P} H_ik                      (rank among positives, self term included)
    NFP_i = sum_{j in N} H_ij                      (soft count of negatives above i)
    l_R(i) = NFP_i / (R_i + NFP_i)                 (ranking error)
    D_i = sum_{k in P, y_k < y_i} H_ik,  E_i = same sum weighted by (1 - y_k)
    A_i = R_i - D_i,  B_i = sum_{k in P, y_k >= y_i} H_ik (1 - y_k)
    l_S(i) = (A_i E_i - B_i D_i) / (A_i R_i)       (current minus target sorting error)

``loss_rank = mean_i l_R(i)``, ``loss_sort = mean_i l_S(i)``. The gradient is the identity update
(spec 1.5), with eps = 1e-10 guards exactly as in the authors' code:

    negative j:  |P| g_j = sum_i [NFP_i > eps] H_ij / (R_i + NFP_i)
    positive i:  |P| g_i = -[NFP_i > eps] l_R(i) - [D_i > eps] l_S(i)
                           + sum_{k: y_i < y_k} [D_k > eps] l_S(k) H_ki / D_k

How it is computed (spec 1.9, 1.10). Positives are sorted by logit once. Every relevant negative (the
ones with ``s_j >= min_i s_i - delta``; the others have H = 0 for every positive, so dropping them is
exact) is located with one binary search among the positives' window edges (the points s_i +- delta).
Its contribution to every ``NFP_i`` is then a range update (1 on the positives far below it, a
linear function of ``s_i`` on the positives within delta), accumulated per gap and spread with
difference arrays; its gradient is a range query on prefix sums of the positives' weights. That is
O((N + P) log P) time. When most entries are relevant negatives the flat input is walked in
contiguous masked chunks; otherwise the relevant negatives are compacted first. Extra memory is
one int32 per walked entry plus O(chunk). The positive-positive sums are dense P x P products,
processed in row chunks so that memory stays O(P * chunk). All sums are in float64 around a
centred logit, so the result does not depend on where the logits sit.

There is exactly one device-to-host synchronisation per call: the positive / relevant-negative counts
and the validity checks are read together, to size the P x P work and to raise clear errors. There
is no per-positive synchronisation and no Python loop over positives.
"""

import contextlib
import math

import torch

from .rank_sort_exact import rank_sort_exact

__all__ = ["rank_sort_loss", "RankSortLoss"]

def _autocast_off(device_type: str):
    """A context disabling autocast on ``device_type`` (a no-op where autocast does not exist)."""
    if device_type in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _flat_inputs(logits: torch.Tensor, targets: torch.Tensor):
    """Detached, flattened ``(s, y, out_dtype)``: logits promoted to at least float32
    (``out_dtype``), targets in ``out_dtype`` (float64 targets stay float64)."""
    if not logits.is_floating_point():
        raise TypeError(f"rank_sort_loss: logits must be floating point, got {logits.dtype}")
    out_dtype = torch.promote_types(logits.dtype, torch.float32)
    s = logits.detach().reshape(-1).to(out_dtype)
    y = targets.detach().reshape(-1)
    y = y.to(torch.float64) if y.dtype == torch.float64 else y.to(out_dtype)
    return s, y, out_dtype


def _save_and_return(ctx, grad, shape, loss_rank, loss_sort, out_dtype):
    """Save the identity-update gradient (viewed as ``shape``) and return the two losses in
    ``out_dtype``, ``loss_sort`` marked non-differentiable."""
    ctx.save_for_backward(grad.view(shape))
    loss_sort = loss_sort.to(out_dtype)
    ctx.mark_non_differentiable(loss_sort)
    return loss_rank.to(out_dtype), loss_sort


class _RankSort(torch.autograd.Function):
    """Returns (loss_rank, loss_sort); backward scales the saved gradient by d(out)/d(loss_rank)."""

    @staticmethod
    def forward(ctx, logits, targets, delta):
        with _autocast_off(logits.device.type):
            s, y, out_dtype = _flat_inputs(logits, targets)
            loss_rank, loss_sort, grad = rank_sort_exact(s, y, float(delta))
        return _save_and_return(ctx, grad, logits.shape, loss_rank, loss_sort, out_dtype)

    @staticmethod
    def backward(ctx, grad_rank, grad_sort):
        (grad,) = ctx.saved_tensors
        # The identity-update gradient carries both the ranking and the sorting parts; it is
        # scaled only by the upstream gradient of loss_rank (the authors' semantics).
        return grad * grad_rank, None, None


def rank_sort_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    delta: float = 0.5,
    *,
    pool: str = "local",
    group=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank & Sort loss over one ranking pool.

    Args:
        logits: tensor of any shape, the classification logits (e.g. images x anchors x classes).
            Must be floating point and finite.
        targets: tensor of the same shape. ``< 0``: ignored; ``0``: negative; ``(0, 1]``: positive,
            the value being its localisation quality (e.g. the IoU of its regressed box).
        delta: half-width of the smoothed step (0.5 in the paper; ``0`` is the hard step).
        pool: ``"local"`` (default, the authors' behaviour) ranks this process's entries only;
            ``"global"`` ranks the entries of every process of ``group`` as one pool (a collective:
            every process must call it), see :mod:`rs_detectron2.losses.global_pool`.
        group: the process group of the global pool (default: all processes).

    Returns:
        ``(loss_rank, loss_sort)``: 0-dim tensors in float32 (float64 for float64 logits), the mean
        ranking error and the mean sorting error over the positives. The gradient of ``loss_rank``
        w.r.t. ``logits`` is the full identity-update gradient (ranking and sorting parts), scaled
        only by the upstream gradient of ``loss_rank``; ``loss_sort`` has no gradient (log it and
        add it to the total, as the authors do). With no positives both losses are 0 and
        ``loss_rank`` is still attached to the graph, with a zero gradient; so does empty input.

    Raises:
        FloatingPointError: if any logit is NaN or infinite.
        ValueError: on mismatched shapes, a negative or infinite delta, targets that are NaN or
            above 1, or an unknown ``pool``.
    """
    if pool not in ("local", "global"):
        raise ValueError(f"rank_sort_loss: pool must be 'local' or 'global', got {pool!r}")
    if logits.shape != targets.shape:
        raise ValueError(
            f"rank_sort_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            "must have the same shape"
        )
    delta = float(delta)
    if not (delta >= 0 and math.isfinite(delta)):
        raise ValueError(f"rank_sort_loss: delta must be finite and >= 0, got {delta}")
    if pool == "global":
        from .global_pool import global_rank_sort_loss

        return global_rank_sort_loss(logits, targets, delta, group)
    return _RankSort.apply(logits, targets, delta)


class RankSortLoss(torch.nn.Module):
    """Module form of :func:`rank_sort_loss`; ``forward(logits, targets) -> (loss_rank, loss_sort)``."""

    def __init__(self, delta: float = 0.5, pool: str = "local"):
        super().__init__()
        if not (float(delta) >= 0 and math.isfinite(float(delta))):
            raise ValueError(f"RankSortLoss: delta must be finite and >= 0, got {delta}")
        if pool not in ("local", "global"):
            raise ValueError(f"RankSortLoss: pool must be 'local' or 'global', got {pool!r}")
        self.delta = float(delta)
        self.pool = pool

    def forward(self, logits, targets):
        return rank_sort_loss(logits, targets, self.delta, pool=self.pool)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, pool={self.pool}"
