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
from typing import Tuple

import torch

__all__ = ["rank_sort_loss", "RankSortLoss"]

_EPS = 1e-10
# Elements per block of the dense positive-positive pass (rows x P).
# 2^17-2^18 elements is the sweet spot on a 2-core CPU (spec 1.10); it also bounds memory.
_BLOCK = 1 << 17
# Negatives per chunk: small enough that the chunk's temporaries stay far below the input's size.
_NEG_BLOCK = 1 << 16


def _step(x: torch.Tensor, delta: float) -> torch.Tensor:
    """The smoothed step H(x), elementwise. ``delta == 0`` gives the hard step [x >= 0]."""
    if delta > 0:
        return (x / (2 * delta) + 0.5).clamp_(0.0, 1.0)
    return (x >= 0).to(x.dtype)


def _select(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the True entries of a 1-D mask whose number of True entries is known."""
    return torch.nonzero_static(mask, size=count).squeeze(1)


def _window_edges(p: torch.Tensor, delta: float):
    """Where a negative can fall relative to the sorted positives ``p`` (P,).

    Returns ``edges`` (sorted, the points at which some H(s_j - s_i) changes its piece) and, for
    every gap ``t`` between consecutive edges (``t = searchsorted(edges, s_j)``), ``lo[t]`` and
    ``hi[t]`` (long, shape (len(edges) + 1,)): a negative in gap ``t`` has H = 1 for the positives
    ``[0, lo)``, H linear for ``[lo, hi)`` and H = 0 for ``[hi, P)``. With delta > 0, H is
    continuous, so a negative lying exactly on an edge may go to either side.
    """
    num_pos = p.numel()
    if delta == 0:
        # H(s_j - s_i) = [s_j >= s_i]: searchsorted(side="right") counts the positives with H = 1.
        gaps = torch.arange(num_pos + 1, device=p.device)
        return p, gaps, gaps
    edges, order = torch.cat([p + delta, p - delta]).sort(stable=True)
    is_upper = order < num_pos  # an edge p_i + delta: above it, positive i has H = 1
    zero = torch.zeros(1, dtype=torch.long, device=p.device)
    lo = torch.cat([zero, is_upper.long().cumsum(0)])
    hi = torch.cat([zero, (~is_upper).long().cumsum(0)])
    return edges, lo, hi


def _positive_pairs(p, y, delta):
    """Positive-positive part in row chunks of a dense P x P matrix.

    ``p``: (P,) float64 sorted centred logits, ``y``: (P,) float64 targets in the same order.
    Returns ``R``, ``l_S``, ``D`` (each (P,)) and ``inflow`` (P,): the sorting gradient that each
    positive receives from the higher-quality positives it out-scores,
    sum_k [D_k > eps] l_S(k) H(s_i - s_k) [y_i < y_k] / D_k.
    """
    num_pos = p.numel()
    values = torch.stack([torch.ones_like(y), 1.0 - y], dim=1)  # (P, 2): counts and (1 - y) sums
    R = torch.empty_like(p)
    lS = torch.empty_like(p)
    D = torch.empty_like(p)
    inflow = torch.zeros_like(p)
    rows = max(1, _BLOCK // num_pos)
    for start in range(0, num_pos, rows):
        end = min(start + rows, num_pos)
        h = _step(p[None, :] - p[start:end, None], delta)  # h[i, k] = H(s_k - s_i)
        h_low = h * (y[None, :] < y[start:end, None])  # only positives of lower quality
        rc = h @ values
        de = h_low @ values
        r, c = rc[:, 0], rc[:, 1]
        d, e = de[:, 0], de[:, 1]
        a = r - d  # >= H(0) > 0: the self term
        b = c - e
        ls = (a * e - b * d) / (a * r)
        R[start:end] = r
        lS[start:end] = ls
        D[start:end] = d
        share = torch.where(d > _EPS, ls / d.clamp_min(_EPS), torch.zeros_like(ls))
        inflow += share @ h_low
    return R, lS, D, inflow


def _rank_sort_forward(s: torch.Tensor, y: torch.Tensor, delta: float):
    """Losses and identity-update gradient for flat ``s`` (n,) and ``y`` (n,).

    Returns ``(loss_rank, loss_sort, grad)``: two 0-dim float64 tensors and the gradient of
    ``loss_rank`` w.r.t. ``s`` as defined by the identity update, shape (n,), dtype of ``s``.
    """
    if s.numel() == 0:
        zero = torch.zeros((), dtype=torch.float64, device=s.device)
        return zero, zero.clone(), torch.zeros_like(s)
    pos_mask = y > 0
    neg_mask = y == 0
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    threshold = (torch.where(pos_mask, s, inf).min().to(torch.float64) - delta).to(s.dtype)
    # Rounded down, so that no negative with H > 0 is lost to rounding (extra ones add exactly 0).
    threshold = torch.nextafter(threshold, -inf)
    rel_mask = neg_mask & (s >= threshold)
    s_min, s_max = torch.aminmax(s)  # NaN propagates, so both are finite iff every logit is
    # float64 holds the counts exactly (float32 would round counts above 2^24)
    checks = torch.stack(
        [
            torch.count_nonzero(pos_mask).to(torch.float64),
            torch.count_nonzero(rel_mask).to(torch.float64),
            s_min.to(torch.float64),
            s_max.to(torch.float64),
            y.max().to(torch.float64),
        ]
    )
    num_pos, num_rel, s_min, s_max, y_max = checks.tolist()  # the one host synchronisation
    num_pos, num_rel = int(num_pos), int(num_rel)
    if not (math.isfinite(s_min) and math.isfinite(s_max)):
        bad = int((~torch.isfinite(s)).sum())
        raise FloatingPointError(
            f"rank_sort_loss: {bad} of {s.numel()} logits are not finite (NaN or inf)"
        )
    if not y_max <= 1:
        bad = int((torch.isnan(y) | (y > 1)).sum())
        raise ValueError(
            f"rank_sort_loss: {bad} targets are NaN or above 1; targets must be < 0 (ignored), "
            "0 (negative) or in (0, 1] (positive, its localisation quality)"
        )
    grad = torch.zeros_like(s)
    if num_pos == 0:
        zero = torch.zeros((), dtype=torch.float64, device=s.device)
        return zero, zero.clone(), grad

    pos_idx = _select(pos_mask, num_pos)
    p, order = s[pos_idx].to(torch.float64).sort()
    pos_idx = pos_idx[order]
    yp = y[pos_idx].to(torch.float64)
    centre = p[num_pos // 2]
    p = p - centre

    # Negatives -> NFP_i of every positive. Each relevant negative is located once among the
    # positives' window edges; per gap, its count and the sum of (s_j + delta) are accumulated.
    edges, lo, hi = _window_edges(p, delta)
    num_gaps = edges.numel() + 1
    # When most entries are relevant negatives, walk the flat input in contiguous chunks and mask
    # (no index list, no gathers); otherwise compact the relevant negatives first.
    dense = 4 * num_rel > s.numel()
    if dense:
        total = s.numel()

        def chunk(start):
            return slice(start, start + _NEG_BLOCK)

    else:
        total = num_rel
        neg_idx = _select(rel_mask, num_rel)

        def chunk(start):
            return neg_idx[start : start + _NEG_BLOCK]

    gap_of = torch.empty(total, dtype=torch.int32, device=s.device)
    gap_cnt = torch.zeros(num_gaps, dtype=torch.float64, device=s.device)
    gap_sum = torch.zeros_like(gap_cnt)
    for start in range(0, total, _NEG_BLOCK):
        idx = chunk(start)
        s_neg = s[idx].to(torch.float64) - centre
        gap = torch.searchsorted(edges, s_neg, side="right", out_int32=True)
        gap_of[start : start + _NEG_BLOCK] = gap
        weight = rel_mask[idx].to(torch.float64) if dense else None
        gap_cnt += torch.bincount(gap, weights=weight, minlength=num_gaps)
        if delta > 0:
            shifted = s_neg + delta if weight is None else (s_neg + delta) * weight
            gap_sum += torch.bincount(gap, weights=shifted, minlength=num_gaps)
    # Positives [0, lo) of gap t have H = 1: count them with suffix sums over lo.
    full = torch.zeros(num_pos + 1, dtype=torch.float64, device=s.device)
    full.index_add_(0, lo, gap_cnt)
    nfp = full.flip(0).cumsum(0).flip(0)[1:]
    if delta > 0:
        # Positives [lo, hi) of gap t get sum_j (s_j + delta - s_i) / (2 delta): difference arrays.
        win_sum = torch.zeros_like(full).index_add_(0, lo, gap_sum).index_add_(0, hi, -gap_sum)
        win_cnt = torch.zeros_like(full).index_add_(0, lo, gap_cnt).index_add_(0, hi, -gap_cnt)
        cnt = win_cnt.cumsum(0)[:-1]
        in_window = (win_sum.cumsum(0)[:-1] - cnt * p) / (2 * delta)
        # An empty window must add exactly 0, not the rounding noise of the running sum.
        nfp = nfp + torch.where(cnt > 0.5, in_window.clamp_min(0.0), torch.zeros_like(p))

    R, lS, D, inflow = _positive_pairs(p, yp, delta)
    rank = R + nfp
    lR = nfp / rank
    has_fp = nfp > _EPS

    # Negatives' gradients: |P| g_j = sum_i w_i H(s_j - s_i) with w_i = l_R(i) / NFP_i = 1 / rank(i)
    # (where NFP_i > eps). Per gap this is alpha + beta * s_j, from prefix sums of w and w * s.
    w = torch.where(has_fp, 1.0 / rank, torch.zeros_like(rank))
    zero1 = torch.zeros(1, dtype=torch.float64, device=s.device)
    w_cum = torch.cat([zero1, w.cumsum(0)])
    ws_cum = torch.cat([zero1, (w * p).cumsum(0)])
    alpha = w_cum[lo]
    beta = torch.zeros_like(alpha)
    if delta > 0:
        w_win = w_cum[hi] - w_cum[lo]
        ws_win = ws_cum[hi] - ws_cum[lo]
        alpha = alpha + (w_win * delta - ws_win) / (2 * delta)
        beta = w_win / (2 * delta)
    alpha, beta = alpha / num_pos, beta / num_pos
    for start in range(0, total, _NEG_BLOCK):
        idx = chunk(start)
        gap = gap_of[start : start + _NEG_BLOCK]
        s_neg = s[idx].to(torch.float64) - centre
        g_neg = alpha[gap] + beta[gap] * s_neg
        if dense:  # positives are written below; ignored and irrelevant entries stay 0
            g_neg = torch.where(rel_mask[idx], g_neg, 0.0)
        grad[idx] = g_neg.to(grad.dtype)

    g_pos = inflow - torch.where(has_fp, lR, torch.zeros_like(lR))
    g_pos = g_pos - torch.where(D > _EPS, lS, torch.zeros_like(lS))
    grad[pos_idx] = (g_pos / num_pos).to(grad.dtype)
    return lR.mean(), lS.mean(), grad


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
            loss_rank, loss_sort, grad = _rank_sort_forward(s, y, float(delta))
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
) -> Tuple[torch.Tensor, torch.Tensor]:
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
