"""Exact soft ranks of the positives for AP Loss and aLRP Loss, without a loop over positives.

Notation (Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019;
Oksuz et al., "A Ranking-based, Balanced Loss Function Unifying Classification and Localisation in
Object Detection", NeurIPS 2020). ``s`` are logits, ``y`` targets: P = {y > 0},
N = {y == 0}, ``y < 0`` ignored. ``H(x) = clip(x / (2 delta) + 1/2, 0, 1)`` with delta > 0. For a
positive i:

    rank+(i) = 1 + sum_{k in P, k != i} H(s_k - s_i)   (the self term is replaced by 1)
    NFP(i)   = sum_{j in N} H(s_j - s_i)               (soft count of negatives above i)
    rank(i)  = rank+(i) + NFP(i)

Every quantity both losses need is a *window sum* over a sorted set: ``H`` is 1 above
``s_i + delta``, linear on ``(s_i - delta, s_i + delta]`` and 0 below, so
``sum_k w_k H(v_k - q)`` is a sum of ``w`` above the window plus ``(sum w v - (q - delta) sum w)
/ (2 delta)`` inside it, read from prefix sums. Unlike the sorting error of RS Loss there is no
positive-positive term that needs more than this, so the cost is O((N + P) log P) time:

- each relevant negative (``s_j > min_i s_i - delta``; the others have H = 0 for every positive) is
  located once among the 2P window edges ``s_i +- delta`` with a binary search; per gap between
  edges its count and logit sum are accumulated and spread to the positives with suffix sums;
- the identity-update gradient of a negative, ``sum_i w_i H(s_j - s_i)`` for per-positive weights
  ``w``, is per gap an affine function of ``s_j`` built from prefix sums of ``w`` and ``w s``;
- the positive-positive sums are window sums over the sorted positives (two binary searches).

All sums are float64 around a centred logit (the median positive), so the result does not depend on
where the logits sit. There is exactly one device-to-host synchronisation (the counts and the input
checks, read together) and no ``bincount``/boolean-mask indexing, which would synchronise on CUDA.
"""

import math
from typing import NamedTuple, Optional

import torch

__all__ = ["RankedPositives", "rank_positives", "negative_gradient", "window_sums"]

# Candidates per chunk of the negatives' passes: bounds the float64 temporaries.
_BLOCK = 1 << 18


class RankedPositives(NamedTuple):
    """The positives of one ranking pool sorted by logit, with their soft ranks.

    Every (P,) tensor is in ascending logit order (ties: flat index order).
    """

    idx: torch.Tensor  # (P,) long: flat index of each positive
    order: torch.Tensor  # (P,) long: its position in the flat positive order (``y.flatten() > 0``)
    p: torch.Tensor  # (P,) float64: logit minus ``centre``
    nfp: torch.Tensor  # (P,) float64: NFP(i)
    num_fp: torch.Tensor  # (P,) float64: the exact count of negatives with H(s_j - s_i) > 0
    rank_pos: torch.Tensor  # (P,) float64: rank+(i)
    loc: Optional[torch.Tensor]  # (P,) float64 localisation errors in this order, or None
    delta: float
    # The candidates (entries with s >= min_i s_i - delta) and where each fell among the window
    # edges, kept for the gradient pass.
    cand_idx: Optional[torch.Tensor]  # (C,) long flat indices, or None: every entry (C = n)
    threshold: torch.Tensor  # 0-dim, dtype of s: the candidates' lower bound
    gap: torch.Tensor  # (C,) int32 gap index per candidate
    gap_lo: torch.Tensor  # (2P + 1,) long: a negative in gap t has H = 1 for positives [0, lo_t)
    gap_hi: torch.Tensor  # (2P + 1,) long: ... H linear for [lo_t, hi_t), H = 0 from hi_t on
    centre: torch.Tensor  # 0-dim float64


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """(n,) -> (n + 1,): sums of the first 0, 1, ..., n entries."""
    out = x.new_zeros(x.shape[0] + 1)
    torch.cumsum(x, 0, out=out[1:])
    return out


def _suffix_sums(values_at: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """``out[i] = sum of values[t] over t with values_at[t] > i``, for i in [0, size)."""
    acc = values.new_zeros(size + 1).index_add_(0, values_at, values)
    return acc.flip(0).cumsum(0).flip(0)[1:]


def _chunk(cand_idx: Optional[torch.Tensor], start: int):
    """The candidates ``[start, start + _BLOCK)``: a slice of the flat input when every entry is
    walked (contiguous views, no gather), else a slice of the index list."""
    if cand_idx is None:
        return slice(start, start + _BLOCK)
    return cand_idx[start : start + _BLOCK]


def _relevant_negatives(s_chunk, y_chunk, cand_idx, threshold):
    """Bool mask of the relevant negatives of one chunk."""
    is_neg = y_chunk == 0
    return is_neg if cand_idx is not None else is_neg & (s_chunk >= threshold)


def _check_and_count(s, y, delta, loc, name):
    """Positive mask, candidate mask and threshold, and their counts; raises on bad input (one
    host sync)."""
    pos_mask = y > 0
    inf = torch.tensor(math.inf, dtype=s.dtype, device=s.device)
    threshold = (torch.where(pos_mask, s, inf).min().to(torch.float64) - delta).to(s.dtype)
    # Rounded down: a negative lost to rounding would drop a positive H; extra ones add 0.
    threshold = torch.nextafter(threshold, -inf)
    cand_mask = s >= threshold
    s_min, s_max = torch.aminmax(s)  # NaN propagates: both finite iff every logit is
    loc_ok = torch.isfinite(loc).all() if loc is not None else torch.ones((), device=s.device)
    # float64 holds the counts exactly (float32 would round counts above 2^24)
    checks = torch.stack(
        [
            torch.count_nonzero(pos_mask).to(torch.float64),
            torch.count_nonzero(cand_mask).to(torch.float64),
            s_min.to(torch.float64),
            s_max.to(torch.float64),
            y.max().to(torch.float64),
            loc_ok.to(torch.float64),
        ]
    )
    num_pos, num_cand, s_min, s_max, y_max, loc_ok = checks.tolist()  # the one host sync
    if not (math.isfinite(s_min) and math.isfinite(s_max)):
        bad = int((~torch.isfinite(s)).sum())
        raise FloatingPointError(f"{name}: {bad} of {s.numel()} logits are not finite (NaN or inf)")
    if not y_max <= 1:
        bad = int((torch.isnan(y) | (y > 1)).sum())
        raise ValueError(
            f"{name}: {bad} targets are NaN or above 1; targets must be < 0 (ignored), "
            "0 (negative) or in (0, 1] (positive)"
        )
    if loc is not None:
        if loc.numel() != int(num_pos):
            raise ValueError(
                f"{name}: loc_errors has {loc.numel()} entries but there are {int(num_pos)} "
                "positives (targets > 0)"
            )
        if not loc_ok:
            raise FloatingPointError(f"{name}: some loc_errors are not finite (NaN or inf)")
    return pos_mask, cand_mask, threshold, int(num_pos), int(num_cand)


def rank_positives(
    s: torch.Tensor,
    y: torch.Tensor,
    delta: float,
    name: str,
    loc: Optional[torch.Tensor] = None,
) -> Optional[RankedPositives]:
    """Soft ranks of the positives of a flat ranking pool.

    Args:
        s: (n,) finite logits, float32 or float64 (not modified).
        y: (n,) targets: ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive.
        delta: half-width of the smoothed step, > 0.
        name: the loss's name, for error messages.
        loc: optional (P,) localisation errors of the positives in flat order (``y > 0``).
    Returns:
        :class:`RankedPositives`, or None when there is no positive.
    Raises:
        FloatingPointError: on non-finite logits or localisation errors.
        ValueError: on targets that are NaN or above 1, or ``loc`` of the wrong length.
    """
    pos_mask, cand_mask, threshold, num_pos, num_cand = _check_and_count(s, y, delta, loc, name)
    if num_pos == 0:
        return None
    f64 = torch.float64
    if 4 * num_cand > s.numel():
        # Most entries are candidates (an untrained head): walk the flat input in contiguous
        # chunks, which is cheaper than compacting it.
        cand_idx = None
        num_cand = s.numel()
        pos_flat = torch.nonzero_static(pos_mask, size=num_pos).squeeze(1)
    else:
        # Every positive is a candidate, so one compaction also finds the positives.
        cand_idx = torch.nonzero_static(cand_mask, size=num_cand).squeeze(1)
        in_cand = torch.nonzero_static(y[cand_idx] > 0, size=num_pos).squeeze(1)
        pos_flat = cand_idx[in_cand]
    p, order = s[pos_flat].to(f64).sort(stable=True)
    centre = p[num_pos // 2]
    p = p - centre

    # Window edges. A negative at v lies in gap t = #edges < v: with the window taken as
    # (s_i - delta, s_i + delta], every negative in it has H > 0, so counts of negatives with
    # H > 0 are exact integers (a float residue cannot pose as a false positive).
    edges, edge_order = torch.cat([p + delta, p - delta]).sort()
    is_upper = edge_order < num_pos
    zero = torch.zeros(1, dtype=torch.long, device=s.device)
    gap_lo = torch.cat([zero, is_upper.long().cumsum(0)])
    gap_hi = torch.cat([zero, (~is_upper).long().cumsum(0)])
    num_gaps = edges.numel() + 1
    gap = torch.empty(num_cand, dtype=torch.int32, device=s.device)
    gap_cnt = torch.zeros(num_gaps, dtype=f64, device=s.device)
    gap_sum = torch.zeros_like(gap_cnt)
    for start in range(0, num_cand, _BLOCK):
        idx = _chunk(cand_idx, start)
        s_chunk = s[idx]
        v = s_chunk.to(f64) - centre
        g = torch.searchsorted(edges, v, side="left", out_int32=True)
        gap[start : start + _BLOCK] = g
        weight = _relevant_negatives(s_chunk, y[idx], cand_idx, threshold).to(f64)
        gap_cnt.index_add_(0, g, weight)
        gap_sum.index_add_(0, g, weight * (v + delta))
    above = _suffix_sums(gap_lo, gap_cnt, num_pos)  # negatives with H = 1
    num_fp = _suffix_sums(gap_hi, gap_cnt, num_pos)  # negatives with H > 0
    win_cnt = num_fp - above
    win_sum = _suffix_sums(gap_hi, gap_sum, num_pos) - _suffix_sums(gap_lo, gap_sum, num_pos)
    in_window = ((win_sum - win_cnt * p) / (2 * delta)).clamp_min(0.0)
    # An empty window adds exactly 0, not the rounding residue of the suffix sums.
    nfp = above + torch.where(win_cnt > 0.5, in_window, torch.zeros_like(p))

    return RankedPositives(
        idx=pos_flat[order],
        order=order,
        p=p,
        nfp=nfp,
        num_fp=num_fp,
        # rank+ = 1 + sum over k != i = 0.5 + sum over every k (the self term is H(0) = 0.5).
        rank_pos=0.5 + window_sums(p, torch.ones_like(p), delta),
        loc=None if loc is None else loc.to(f64)[order],
        delta=delta,
        cand_idx=cand_idx,
        threshold=threshold,
        gap=gap,
        gap_lo=gap_lo,
        gap_hi=gap_hi,
        centre=centre,
    )


def window_sums(p: torch.Tensor, weights: torch.Tensor, delta: float) -> torch.Tensor:
    """``out_i = sum_k weights_k H(p_k - p_i)`` over every k (the self term H(0) = 1/2 included).

    ``p``: (P,) sorted float64 logits (e.g. :attr:`RankedPositives.p`), ``weights``: (P,) float64
    in the same order, ``delta > 0``. Returns (P,) float64.
    """
    lo = torch.searchsorted(p, p - delta, side="right")  # s_k <= s_i - delta: H = 0
    hi = torch.searchsorted(p, p + delta, side="right")  # s_k > s_i + delta: H = 1
    w_cum = _exclusive_cumsum(weights)
    wp_cum = _exclusive_cumsum(weights * p)
    w_win = w_cum[hi] - w_cum[lo]
    in_window = ((wp_cum[hi] - wp_cum[lo]) - (p - delta) * w_win) / (2 * delta)
    return (w_cum[-1] - w_cum[hi]) + in_window


def negative_gradient(
    ranked: RankedPositives, weights: torch.Tensor, s: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """The identity-update gradient of the negatives: ``g_j = sum_i weights_i H(s_j - s_i) / P``.

    Args:
        ranked: from :func:`rank_positives` on ``s``, ``y``.
        weights: (P,) float64 per-positive weights, in the order of ``ranked``.
        s, y: the flat (n,) logits and targets ranked.
    Returns:
        (n,) gradient in the dtype of ``s``: ``g_j`` on the negatives, 0 elsewhere (the caller
        writes the positives).
    """
    num_pos = ranked.p.numel()
    delta = ranked.delta
    lo, hi = ranked.gap_lo, ranked.gap_hi
    w_cum = _exclusive_cumsum(weights)
    wp_cum = _exclusive_cumsum(weights * ranked.p)
    # Gap t: sum_{i < lo_t} w_i + sum_{lo_t <= i < hi_t} w_i (v - p_i + delta) / (2 delta),
    # i.e. alpha_t + beta_t v.
    w_win = w_cum[hi] - w_cum[lo]
    beta = w_win / (2 * delta)
    alpha = w_cum[lo] + (w_win * delta - (wp_cum[hi] - wp_cum[lo])) / (2 * delta)
    alpha, beta = alpha / num_pos, beta / num_pos
    grad = torch.zeros_like(s)
    for start in range(0, ranked.gap.numel(), _BLOCK):
        idx = _chunk(ranked.cand_idx, start)
        g = ranked.gap[start : start + _BLOCK]
        s_chunk = s[idx]
        v = s_chunk.to(torch.float64) - ranked.centre
        g_neg = alpha.index_select(0, g) + beta.index_select(0, g) * v
        is_rel = _relevant_negatives(s_chunk, y[idx], ranked.cand_idx, ranked.threshold)
        grad[idx] = torch.where(is_rel, g_neg, 0.0).to(grad.dtype)
    return grad
