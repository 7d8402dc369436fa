"""The exact Rank & Sort computation on flat tensors: values and identity-update gradient.

Used by :mod:`rs_detectron2.losses.rank_sort`, which handles shapes, dtypes, autocast and the
optional cross-process pool. See that module for the notation (Oksuz et al., ICCV 2021, Sec. 3).

How it is computed. Positives are sorted by logit once. Every relevant negative (the ones with
``s_j >= min_i s_i - delta``; the others have H = 0 for every positive, so dropping them is exact)
is located with one binary search among the positives' window edges (the points s_i +- delta). Its
contribution to every ``NFP_i`` is then a range update (1 on the positives far below it, a linear
function of ``s_i`` on the positives within delta), accumulated per gap and spread with difference
arrays; its gradient is a range query on prefix sums of the positives' weights. That is
O((N + P) log P) time. When most entries are candidates (logit above the threshold) the flat input
is walked in contiguous masked chunks; otherwise the candidates are compacted once.

The positive-positive sums (``R_i``, ``D_i``, ``E_i`` and the sorting gradient that each positive
receives from higher-quality positives) take one of two exact routes, chosen by the number of
positives:

- ``"dense"``: row chunks of the P x P matrix of H values, O(P^2) time, O(P * chunk) memory;
- ``"tree"``: the quality condition ``y_k < y_i`` is a prefix (``y_k > y_i`` a suffix) of the
  positives ordered by quality, so it is answered by a merge-sort tree over quality positions whose
  nodes hold their positives in logit order (a wavelet-tree descent: one level at a time, each
  query following its path to a leaf with counts and prefix sums, no binary search per node).
  H is piecewise linear, so a window of logits contributes sums of 1, s and (1 - y) found from
  prefix sums. O(P log P) time and O(P) memory.

All sums are in float64 around a centred logit, so the result does not depend on where the logits
sit. There is exactly one device-to-host synchronisation per call and no Python loop over
positives (the loops run over chunks of entries and over the log2 P levels of the tree).
"""

import math
from typing import NamedTuple, Optional

import torch

__all__ = ["rank_sort_exact"]

_EPS = 1e-10
# Elements per block of the dense positive-positive pass (rows x P): 2^17-2^18 elements is the
# sweet spot on a 2-core CPU; it also bounds memory.
_BLOCK = 1 << 17
# Entries per chunk of the negatives' pass: the chunk's temporaries stay far below the input's size.
_NEG_BLOCK = 1 << 16
# From this many positives on, the tree pass replaces the dense one (the crossover measured with
# benchmarks/bench_rank_sort.py --crossover; README.md, "The loss at scale").
_TREE_MIN_POS = {"cpu": 1024, "cuda": 2048}
_PAIR_METHODS = ("auto", "dense", "tree")
# The tree pass sums leaves of 2^_LEAF_LEVEL quality positions directly, and leaves of 64 up to
# _WIDE_LEAF_MAX_POS positives (fewer levels: kernel launches dominate there).
_LEAF_LEVEL = 4
_WIDE_LEAF_MAX_POS = 8192


def _step(x: torch.Tensor, delta: float) -> torch.Tensor:
    """The smoothed step H(x), elementwise. ``delta == 0`` gives the hard step [x >= 0]."""
    if delta > 0:
        return (x / (2 * delta) + 0.5).clamp_(0.0, 1.0)
    return (x >= 0).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# Step 1: checks, counts and the relevance threshold (the one host synchronisation)


class _Counts(NamedTuple):
    pos_mask: torch.Tensor  # (n,) bool, y > 0
    cand_mask: torch.Tensor  # (n,) bool, s >= threshold: positives and possibly relevant entries
    threshold: torch.Tensor  # 0-dim, dtype of s
    num_pos: int
    num_cand: int


def _check_and_count(s: torch.Tensor, y: torch.Tensor, delta: float) -> _Counts:
    """Masks, counts and validity checks, read back to the host together (one synchronisation).

    Every positive is a candidate (its logit is at least the threshold), so one compaction of the
    candidates also finds the positives. Raises on non-finite logits and on targets above 1 or NaN.
    """
    pos_mask = y > 0
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    threshold = (torch.where(pos_mask, s, inf).min().to(torch.float64) - delta).to(s.dtype)
    # Rounded down, so that no negative with H > 0 is lost to rounding (extra ones add exactly 0).
    threshold = torch.nextafter(threshold, -inf)
    cand_mask = s >= threshold
    s_min, s_max = torch.aminmax(s)  # NaN propagates, so both are finite iff every logit is
    # float64 holds the counts exactly (float32 would round counts above 2^24)
    checks = torch.stack(
        [
            torch.count_nonzero(pos_mask).to(torch.float64),
            torch.count_nonzero(cand_mask).to(torch.float64),
            s_min.to(torch.float64),
            s_max.to(torch.float64),
            y.max().to(torch.float64),
        ]
    )
    num_pos, num_cand, s_min, s_max, y_max = checks.tolist()  # the one host synchronisation
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
    return _Counts(pos_mask, cand_mask, threshold, int(num_pos), int(num_cand))


# ----------------------------------------------------------------------------------------------
# Step 2: the positives, sorted by logit, and how the candidates are visited


class _Positives(NamedTuple):
    idx: torch.Tensor  # (P,) long, flat index of each positive, in logit order
    p: torch.Tensor  # (P,) float64 sorted logits minus ``centre``
    y: torch.Tensor  # (P,) float64 targets in the same order
    centre: torch.Tensor  # 0-dim float64, the median positive logit


class _Walk(NamedTuple):
    """The candidate entries, visited in chunks: the flat input itself, or a compacted list."""

    flat: bool  # True: walk every entry in contiguous chunks and mask; False: walk ``idx``
    total: int  # number of walked entries
    idx: Optional[torch.Tensor]  # (total,) long candidate indices when not ``flat``

    def chunk(self, start: int):
        if self.flat:
            return slice(start, start + _NEG_BLOCK)
        return self.idx[start : start + _NEG_BLOCK]


def _positives_and_walk(s, y, counts: _Counts):
    """Compacts the positives (sorted by logit, centred) and chooses how to walk the candidates."""
    # When most entries are candidates, walking the flat input in contiguous chunks (no index list,
    # no gathers) is cheaper; otherwise the candidates are compacted once and walked by index.
    flat = 4 * counts.num_cand > s.numel()
    if flat:
        pos_idx = torch.nonzero_static(counts.pos_mask, size=counts.num_pos).squeeze(1)
        walk = _Walk(True, s.numel(), None)
    else:
        cand_idx = torch.nonzero_static(counts.cand_mask, size=counts.num_cand).squeeze(1)
        in_cand = torch.nonzero_static(y[cand_idx] > 0, size=counts.num_pos).squeeze(1)
        pos_idx = cand_idx[in_cand]
        walk = _Walk(False, counts.num_cand, cand_idx)
    p, order = s[pos_idx].to(torch.float64).sort()
    pos_idx = pos_idx[order]
    centre = p[counts.num_pos // 2]
    return _Positives(pos_idx, p - centre, y[pos_idx].to(torch.float64), centre), walk


# ----------------------------------------------------------------------------------------------
# Step 3: relevant negatives -> NFP_i of every positive


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


def _negatives_nfp(s, y, counts: _Counts, pos: _Positives, walk: _Walk, delta: float):
    """NFP_i (P,) float64 of every positive, and the gap of every walked entry (int32).

    Each relevant negative is located once among the positives' window edges; per gap, its count
    and the sum of (s_j + delta) are accumulated, then spread to the positives with suffix sums
    (H = 1 part) and difference arrays (linear part).
    """
    p = pos.p
    num_pos = p.numel()
    edges, lo, hi = _window_edges(p, delta)
    num_gaps = edges.numel() + 1
    gap_of = torch.empty(walk.total, dtype=torch.int32, device=s.device)
    gap_cnt = torch.zeros(num_gaps, dtype=torch.float64, device=s.device)
    gap_sum = torch.zeros_like(gap_cnt)
    for start in range(0, walk.total, _NEG_BLOCK):
        idx = walk.chunk(start)
        s_chunk = s[idx]
        is_rel = y[idx] == 0
        if walk.flat:
            is_rel &= s_chunk >= counts.threshold
        s_neg = s_chunk.to(torch.float64) - pos.centre
        gap = torch.searchsorted(edges, s_neg, side="right", out_int32=True)
        gap_of[start : start + _NEG_BLOCK] = gap
        weight = is_rel.to(torch.float64)
        gap_cnt += torch.bincount(gap, weights=weight, minlength=num_gaps)
        if delta > 0:
            gap_sum += torch.bincount(gap, weights=(s_neg + delta) * weight, minlength=num_gaps)
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
    return nfp, gap_of, lo, hi


# ----------------------------------------------------------------------------------------------
# Step 4: the positive-positive sums


class _PairSums(NamedTuple):
    """Per positive (P,) float64, in logit order."""

    R: torch.Tensor  # sum_k H_ik: rank among positives, self term included
    lS: torch.Tensor  # sorting error l_S(i) (current minus target)
    D: torch.Tensor  # sum_{k: y_k < y_i} H_ik, the mis-sorted pmf's denominator
    inflow: torch.Tensor  # sum_{k: y_k > y_i} [D_k > eps] l_S(k) H_ki / D_k


def _sorting_error(R, C, D, E):
    """l_S = C/R - B/A with A = R - D, B = C - E, written without cancellation."""
    A = R - D  # >= H(0) > 0: the self term
    B = C - E
    return (A * E - B * D) / (A * R)


def _sorting_share(lS, D):
    """[D_k > eps] l_S(k) / D_k: the weight with which positive k spreads its sorting error."""
    return torch.where(D > _EPS, lS / D.clamp_min(_EPS), torch.zeros_like(lS))


def _pairs_dense(p, y, delta) -> _PairSums:
    """Positive-positive sums in row chunks of the dense P x P matrix ``h[i, k] = H(s_k - s_i)``.

    ``p``: (P,) float64 sorted centred logits, ``y``: (P,) float64 targets in the same order.
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
        if delta > 0:  # H(s_k - s_i) = clamp((s_k - (s_i - delta)) / (2 delta), 0, 1)
            h = (p[None, :] - (p[start:end, None] - delta)).mul_(0.5 / delta).clamp_(0.0, 1.0)
        else:
            h = (p[None, :] >= p[start:end, None]).to(p.dtype)
        h_low = torch.where(y[None, :] < y[start:end, None], h, 0.0)  # lower-quality positives
        rc = h @ values
        de = h_low @ values
        ls = _sorting_error(rc[:, 0], rc[:, 1], de[:, 0], de[:, 1])
        R[start:end] = rc[:, 0]
        lS[start:end] = ls
        D[start:end] = de[:, 0]
        inflow += _sorting_share(ls, de[:, 0]) @ h_low
    return _PairSums(R, lS, D, inflow)


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n + 1, ...): sums of the first 0, 1, ..., n rows."""
    out = x.new_zeros((x.shape[0] + 1, *x.shape[1:]))
    torch.cumsum(x, 0, out=out[1:])
    return out


def _quality_tree_sums(q_of, bound, thresholds, weights, suffix: bool, leaf_level: int):
    """Sums over the positives selected by quality position and logit rank, above the leaves.

    Positives are indexed by logit rank ``r`` (0..P-1); ``q_of[r]`` is their position in quality
    order (a permutation of 0..P-1). Query ``i`` (P of them) selects the positives ``k`` with
    ``q_of[k] < bound[i]`` (``suffix=False``) or ``q_of[k] >= bound[i]`` (``suffix=True``) and,
    per column ``x`` of ``thresholds`` (P, T) long, those of them with rank ``k < x[i]``.
    Returns ``(count, sums)``: (P, T) long and (P, T, K) float64 for ``weights`` (P, K), over the
    selected positives outside the leaf of ``bound`` (the block of 2^leaf_level quality positions
    holding it), which the caller sums directly.

    The tree is a merge-sort tree over quality positions, built top-down: the level-l array holds
    the positives in blocks of 2^l consecutive quality positions, each block in logit order; a
    stable partition (one cumulative count) turns one level into the next. The selected quality
    range is the union of the siblings of the path from the root to ``bound``'s leaf, one per
    level. The number of a block's positives with rank < x follows the path down from the root
    (where it is x itself) through the partition counts, so a level costs O(P) for all queries.
    """
    num_pos, num_thr = thresholds.shape
    device = q_of.device
    positions = torch.arange(num_pos, device=device)
    order = positions  # the root: every positive, in logit (= rank) order
    below = thresholds.clone()  # per query: positives of its current node with rank < x
    count = torch.zeros_like(thresholds)
    sums = weights.new_zeros(num_pos, num_thr, weights.shape[1])
    for level in range(num_pos.bit_length() - 1, leaf_level - 1, -1):
        size = 1 << level
        # Partition each parent block (2 size quality positions) into its two children, stably.
        goes_right = ((q_of.index_select(0, order) >> level) & 1).bool()
        left_before = _exclusive_cumsum((~goes_right).long())  # left-goers before each position
        left_base = (positions >> (level + 1)) << level  # left-goers of the earlier parents
        to_left = left_before[:-1] + left_base
        to_right = positions + size + 2 * left_base - to_left
        order = torch.empty_like(order).index_put_(
            (torch.where(goes_right, to_right, to_left),), order
        )
        cum = _exclusive_cumsum(weights.index_select(0, order))  # (P + 1, K), this level's order
        # Each query's node (the parent) at this level, and how its `below` counts split.
        went_right = ((bound >> level) & 1).bool()
        start = (bound >> (level + 1)) << (level + 1)
        below_left = _take(left_before, start[:, None] + below) - (start >> 1)[:, None]
        if suffix:  # the right child is selected whole where the path goes left
            child = (start + size).clamp_max(num_pos)
            part = torch.where(went_right[:, None], 0, below - below_left)
        else:  # the left child is selected whole where the path goes right
            child = start
            part = torch.where(went_right[:, None], below_left, 0)
        sums += _take(cum, child[:, None] + part) - cum.index_select(0, child)[:, None, :]
        count += part
        below = torch.where(went_right[:, None], below - below_left, below_left)
    return count, sums


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` along the first dimension (index_select is the fast gather on CPU)."""
    return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])


def _quality_leaves(values, by_quality, leaf_level: int):
    """``values`` (P, K) in quality order, padded with zeros and cut into leaves: (P / B, B, K)."""
    num_pos = by_quality.numel()
    size = 1 << leaf_level
    leaves = values.new_zeros(-(-num_pos // size) * size, values.shape[1])
    leaves[:num_pos] = values.index_select(0, by_quality)
    return leaves.view(-1, size, values.shape[1])


def _leaf_selection(bound, num_pos: int, suffix: bool, leaf_level: int):
    """Per query, the leaf holding ``bound`` and which of its 2^leaf_level quality positions lie in
    the query's range: ``(leaf, selected)``, (P,) long and (P, B) bool."""
    leaf = bound >> leaf_level
    qpos = (leaf << leaf_level)[:, None] + torch.arange(1 << leaf_level, device=bound.device)
    selected = qpos >= bound[:, None] if suffix else qpos < bound[:, None]
    return leaf.clamp_max(-(-num_pos // (1 << leaf_level)) - 1), selected & (qpos < num_pos)


def _leaf_sums(leaves, bound, p, delta, suffix: bool, leaf_level: int):
    """Per query, the sums of H and of H * value over the selected positives of its leaf: (P, 2).

    ``leaves`` (P / B, B, 2) holds (logit, value) per leaf (:func:`_quality_leaves`). H is
    ``H(s_k - s_i)`` for the lower-quality side and ``H(s_i - s_k)`` for the higher one
    (``suffix``). Queries are taken in chunks so that the temporaries stay within _BLOCK elements.
    """
    num_pos = p.numel()
    out = p.new_empty(num_pos, 2)
    rows = max(1, _BLOCK >> leaf_level)
    for start in range(0, num_pos, rows):
        end = min(start + rows, num_pos)
        leaf, selected = _leaf_selection(bound[start:end], num_pos, suffix, leaf_level)
        leaf_rows = leaves.index_select(0, leaf)  # (rows, B, 2)
        if suffix:
            h = _step(p[start:end, None] - leaf_rows[:, :, 0], delta)
        else:
            h = _step(leaf_rows[:, :, 0] - p[start:end, None], delta)
        h.masked_fill_(~selected, 0.0)
        out[start:end, 0] = h.sum(1)
        out[start:end, 1] = (h * leaf_rows[:, :, 1]).sum(1)
    return out


def _quality_positions(y):
    """For targets ``y`` (P,): the stable quality order ``by_quality`` (ranks by increasing y), the
    quality position of each entry, and per entry the first and one-past-last quality positions of
    its tie group (equal targets are never "lower")."""
    num_pos = y.numel()
    y_sorted, by_quality = y.sort(stable=True)
    positions = torch.arange(num_pos, device=y.device)
    q_of = torch.empty_like(positions).index_put_((by_quality,), positions)
    first = torch.ones(num_pos, dtype=torch.bool, device=y.device)
    first[1:] = y_sorted[1:] != y_sorted[:-1]
    last = torch.ones_like(first)
    last[:-1] = first[1:]
    tie_start = torch.where(first, positions, 0).cummax(0).values
    tie_end = torch.where(last, positions + 1, num_pos).flip(0).cummin(0).values.flip(0)
    return by_quality, q_of, tie_start[q_of], tie_end[q_of]


def _pairs_tree(p, y, delta) -> _PairSums:
    """Positive-positive sums in O(P log P) with the quality tree (same inputs as the dense pass).

    With delta > 0, ``H(s_k - s_i)`` is 1 for ranks ``k >= hi_i`` (s_k > s_i + delta), linear for
    ``lo_i <= k < hi_i`` and 0 below; ``H(s_i - s_k)`` is 1 for ``k < lo_i``, linear for
    ``lo_i <= k < hi_i`` and 0 above. The window leaves out s_k = s_i - delta, where H is 0, so an
    empty selection sums to exactly 0 (the eps tests see exact zeros where the dense pass does).
    Leaves of 2^_LEAF_LEVEL quality positions are summed directly, with H itself.
    """
    num_pos = p.numel()
    one_minus_y = 1.0 - y
    by_quality, q_of, tie_start, tie_end = _quality_positions(y)
    leaf_level = min(_LEAF_LEVEL if num_pos > _WIDE_LEAF_MAX_POS else 6, num_pos.bit_length())
    every = torch.full_like(tie_start, num_pos)  # threshold "rank < P": all selected positives
    two_delta = 2 * delta
    if delta > 0:
        lo = torch.searchsorted(p, p - delta, side="right")
        hi = torch.searchsorted(p, p + delta, side="right")
        cols = torch.stack([one_minus_y, p, one_minus_y * p], dim=1)
        # R_i and C_i over every positive (no quality condition): prefix sums in logit order.
        full = _exclusive_cumsum(cols)
        win = full[hi] - full[lo]
        R = (num_pos - hi) + (win[:, 1] - (hi - lo) * (p - delta)) / two_delta
        C = (full[-1, 0] - full[hi, 0]) + (win[:, 2] - win[:, 0] * (p - delta)) / two_delta
        # D_i and E_i: the positives of lower quality (before i's tie group), tree part.
        count, sums = _quality_tree_sums(
            q_of, tie_start, torch.stack([lo, hi, every], 1), cols, False, leaf_level
        )
        w_cnt = count[:, 1] - count[:, 0]
        w_sum = sums[:, 1] - sums[:, 0]
        D = (count[:, 2] - count[:, 1]) + (w_sum[:, 1] - w_cnt * (p - delta)) / two_delta
        E = (sums[:, 2, 0] - sums[:, 1, 0]) + (w_sum[:, 2] - w_sum[:, 0] * (p - delta)) / two_delta
    else:
        lo = torch.searchsorted(p, p, side="left")  # H(s_k - s_i) = 1 for ranks k >= lo_i
        hi = torch.searchsorted(p, p, side="right")  # H(s_i - s_k) = 1 for ranks k < hi_i
        full = _exclusive_cumsum(one_minus_y)
        R = (num_pos - lo).to(torch.float64)
        C = full[-1] - full[lo]
        count, sums = _quality_tree_sums(
            q_of, tie_start, torch.stack([lo, every], 1), one_minus_y[:, None], False, leaf_level
        )
        D = (count[:, 1] - count[:, 0]).to(torch.float64)
        E = sums[:, 1, 0] - sums[:, 0, 0]
    # Leaves: the lower-quality positives in the leaf holding i's tie start, summed with H itself.
    leaves = _quality_leaves(torch.stack([p, one_minus_y], 1), by_quality, leaf_level)
    leaf_sums = _leaf_sums(leaves, tie_start, p, delta, False, leaf_level)
    D = D.clamp_min(0.0) + leaf_sums[:, 0]
    E = E.clamp_min(0.0) + leaf_sums[:, 1]
    lS = _sorting_error(R, C, D, E)
    share = _sorting_share(lS, D)

    # inflow_i: the positives of higher quality (from the end of i's tie group on).
    if delta > 0:
        _, sums = _quality_tree_sums(
            q_of,
            tie_end,
            torch.stack([lo, hi], 1),
            torch.stack([share, share * p], 1),
            True,
            leaf_level,
        )
        w_sum = sums[:, 1] - sums[:, 0]
        inflow = sums[:, 0, 0] + (w_sum[:, 0] * (p + delta) - w_sum[:, 1]) / two_delta
    else:
        _, sums = _quality_tree_sums(q_of, tie_end, hi[:, None], share[:, None], True, leaf_level)
        inflow = sums[:, 0, 0]
    leaves = _quality_leaves(torch.stack([p, share], 1), by_quality, leaf_level)
    inflow = inflow + _leaf_sums(leaves, tie_end, p, delta, True, leaf_level)[:, 1]
    return _PairSums(R, lS, D, inflow)


def _positive_pairs(p, y, delta, method: str) -> _PairSums:
    """The dense or the tree pass (``method``: "auto", "dense" or "tree")."""
    if method == "auto":
        crossover = _TREE_MIN_POS.get(p.device.type, _TREE_MIN_POS["cuda"])
        method = "tree" if p.numel() >= crossover else "dense"
    if method == "tree":
        return _pairs_tree(p, y, delta)
    return _pairs_dense(p, y, delta)


# ----------------------------------------------------------------------------------------------
# Step 5: gradients


def _write_negative_grads(grad, s, y, counts, pos, walk, gap_of, lo, hi, w, delta):
    """|P| g_j = sum_i w_i H(s_j - s_i) with w_i = l_R(i) / NFP_i = 1 / rank(i) (where
    NFP_i > eps), written for every walked entry (0 where it is not a relevant negative).

    Per gap this is alpha + beta * s_j, from prefix sums of w and w * s over the sorted positives.
    """
    num_pos = pos.p.numel()
    zero1 = torch.zeros(1, dtype=torch.float64, device=s.device)
    w_cum = torch.cat([zero1, w.cumsum(0)])
    alpha = w_cum[lo]
    beta = torch.zeros_like(alpha)
    if delta > 0:
        ws_cum = torch.cat([zero1, (w * pos.p).cumsum(0)])
        w_win = w_cum[hi] - w_cum[lo]
        ws_win = ws_cum[hi] - ws_cum[lo]
        alpha = alpha + (w_win * delta - ws_win) / (2 * delta)
        beta = w_win / (2 * delta)
    alpha, beta = alpha / num_pos, beta / num_pos
    for start in range(0, walk.total, _NEG_BLOCK):
        idx = walk.chunk(start)
        gap = gap_of[start : start + _NEG_BLOCK]
        s_chunk = s[idx]
        is_rel = y[idx] == 0
        if walk.flat:
            is_rel &= s_chunk >= counts.threshold
        g_neg = alpha[gap] + beta[gap] * (s_chunk.to(torch.float64) - pos.centre)
        # Positives are written afterwards; ignored and irrelevant entries stay 0.
        grad[idx] = torch.where(is_rel, g_neg, 0.0).to(grad.dtype)


def rank_sort_exact(s: torch.Tensor, y: torch.Tensor, delta: float, *, pairs: str = "auto"):
    """Losses and identity-update gradient for flat ``s`` (n,) and ``y`` (n,).

    ``pairs`` picks the positive-positive pass: ``"auto"`` (dense below a measured number of
    positives, the tree above), ``"dense"`` or ``"tree"``; all give the same values up to rounding.

    Returns ``(loss_rank, loss_sort, grad)``: two 0-dim float64 tensors and the gradient of
    ``loss_rank`` w.r.t. ``s`` as defined by the identity update, shape (n,), dtype of ``s``.
    """
    if pairs not in _PAIR_METHODS:
        raise ValueError(f"rank_sort_exact: pairs must be one of {_PAIR_METHODS}, got {pairs!r}")
    zero = torch.zeros((), dtype=torch.float64, device=s.device)
    if s.numel() == 0:
        return zero, zero.clone(), torch.zeros_like(s)
    counts = _check_and_count(s, y, delta)
    grad = torch.zeros_like(s)
    if counts.num_pos == 0:
        return zero, zero.clone(), grad
    pos, walk = _positives_and_walk(s, y, counts)
    nfp, gap_of, lo, hi = _negatives_nfp(s, y, counts, pos, walk, delta)
    pair = _positive_pairs(pos.p, pos.y, delta, pairs)

    rank = pair.R + nfp
    lR = nfp / rank
    has_fp = nfp > _EPS
    w = torch.where(has_fp, 1.0 / rank, torch.zeros_like(rank))
    _write_negative_grads(grad, s, y, counts, pos, walk, gap_of, lo, hi, w, delta)
    g_pos = pair.inflow - torch.where(has_fp, lR, torch.zeros_like(lR))
    g_pos = g_pos - torch.where(pair.D > _EPS, pair.lS, torch.zeros_like(pair.lS))
    grad[pos.idx] = (g_pos / pos.p.numel()).to(grad.dtype)
    return lR.mean(), pair.lS.mean(), grad
