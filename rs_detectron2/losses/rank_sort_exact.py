"""The exact Rank & Sort computation on flat tensors: values and identity-update gradient.

Used by :mod:`rs_detectron2.losses.rank_sort`, which handles shapes, dtypes, autocast and the
optional cross-process pool. See that module for the notation (Oksuz et al., ICCV 2021, Sec. 3).

How it is computed. Positives are sorted by logit once. Every relevant negative (the ones with
``s_j >= min_i s_i - delta``; the others have H = 0 for every positive, so dropping them is exact)
is located with one binary search among the positives' window edges (the points s_i +- delta). Its
contribution to every ``NFP_i`` is then a range update (1 on the positives far below it, a linear
function of ``s_i`` on the positives within delta), accumulated per gap and spread with difference
arrays; its gradient is a range query on prefix sums of the positives' weights. That is
O((N + P) log P) time. When most entries are relevant negatives the flat input is walked in
contiguous masked chunks; otherwise the relevant negatives are compacted first. The
positive-positive sums are dense P x P products, processed in row chunks so that memory stays
O(P * chunk). All sums are in float64 around a centred logit, so the result does not depend on
where the logits sit. There is exactly one device-to-host synchronisation per call.
"""

import math

import torch

__all__ = ["rank_sort_exact"]

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


def rank_sort_exact(s: torch.Tensor, y: torch.Tensor, delta: float):
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
