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

- ``"dense"``: row chunks of the matrix of H values, rows and columns in quality order so that
  only the lower-quality pairs (the columns before each row) are built: P^2 / 2 entries, O(P^2)
  time, O(P * chunk) memory;
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

import functools
import math
from typing import NamedTuple, Optional

import torch

__all__ = ["rank_sort_exact"]

_EPS = 1e-10
# Elements per block of the dense positive-positive pass (rows x P): 2^17 elements is the sweet
# spot on a 2-core CPU; smaller where the input is small (see rank_sort_exact's budget).
_BLOCK = 1 << 17
# ... but at most this many chunks (a loop over chunks, never over positives).
_DENSE_MAX_CHUNKS = 64
# Entries per chunk of the negatives' pass: at most _NEG_BLOCK, at least _NEG_MIN_BLOCK, else about
# 1/64 of the input, so that the chunk's temporaries stay far below the input's size.
_NEG_BLOCK = 1 << 16
_NEG_MIN_BLOCK = {"cpu": 4096, "cuda": 1 << 16}
# From this many positives on, the tree pass replaces the dense one (the crossover measured with
# benchmarks/bench_rank_sort.py --crossover; docs/benchmarks.md, "The RS loss at scale").
_TREE_MIN_POS = {"cpu": 2048, "cuda": 2048}
_PAIR_METHODS = ("auto", "dense", "tree")
# The tree pass sums leaves of 2^_LEAF_LEVEL quality positions directly, and leaves of 64 up to
# _WIDE_LEAF_MAX_POS positives (fewer levels: kernel launches dominate there).
_LEAF_LEVEL = 4
_WIDE_LEAF_MAX_POS = 8192
# The tree walks its queries in about _TREE_CHUNKS chunks of at least _TREE_MIN_CHUNK queries.
_TREE_CHUNKS = 16
_TREE_MIN_CHUNK = {"cpu": 2048, "cuda": 1 << 16}


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


def _masked_min(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0-dim minimum of ``s`` where ``mask`` (+inf where it selects nothing), in chunks of
    ``_NEG_BLOCK``: an input-sized temporary would cost more in page faults than the minimum."""
    inf = torch.tensor(float("inf"), dtype=s.dtype, device=s.device)
    if s.numel() <= _NEG_BLOCK:
        return torch.where(mask, s, inf).amin()
    mins = s.new_empty(-(-s.numel() // _NEG_BLOCK))
    for i, start in enumerate(range(0, s.numel(), _NEG_BLOCK)):
        chunk = slice(start, start + _NEG_BLOCK)
        torch.amin(torch.where(mask[chunk], s[chunk], inf), dim=0, out=mins[i])
    return mins.amin()


def _check_and_count(s: torch.Tensor, y: torch.Tensor, delta: float) -> _Counts:
    """Masks, counts and validity checks, read back to the host together (one synchronisation).

    Every positive is a candidate (its logit is at least the threshold), so one compaction of the
    candidates also finds the positives. Raises on non-finite logits and on targets above 1 or NaN.
    """
    pos_mask = y > 0
    threshold = (_masked_min(s, pos_mask).to(torch.float64) - delta).to(s.dtype)
    # Rounded down, so that no negative with H > 0 is lost to rounding (extra ones add exactly 0).
    threshold = torch.nextafter(threshold, torch.full_like(threshold, -float("inf")))
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
    idx: torch.Tensor  # (P,) int32 (int64 for inputs of 2^31 entries), flat index, in logit order
    p: torch.Tensor  # (P,) float64 sorted logits minus ``centre``
    y: torch.Tensor  # (P,) targets in the same order, dtype of the input
    centre: torch.Tensor  # 0-dim float64, the median positive logit


class _Walk(NamedTuple):
    """The candidate entries, visited in chunks: the flat input itself, or a compacted list."""

    flat: bool  # True: walk every entry in contiguous chunks and mask; False: walk ``idx``
    total: int  # number of walked entries
    idx: Optional[torch.Tensor]  # (total,) candidate indices (dtype of ``_Positives.idx``)
    block: int  # entries per chunk

    def chunks(self):
        """``(entries, where)`` per chunk: the entries' indices in the input (a slice or an index
        tensor) and their positions in the walk (a slice)."""
        for start in range(0, self.total, self.block):
            where = slice(start, start + self.block)
            yield (where if self.flat else self.idx[where]), where


def _positives_and_walk(s, y, counts: _Counts):
    """Compacts the positives (sorted by logit, centred) and chooses how to walk the candidates."""
    # When most entries are candidates, walking the flat input in contiguous chunks (no index list,
    # no gathers) is cheaper; otherwise the candidates are compacted once and walked by index.
    flat = 4 * counts.num_cand > s.numel()
    minimum = _NEG_MIN_BLOCK.get(s.device.type, _NEG_MIN_BLOCK["cuda"])
    block = min(_NEG_BLOCK, max(minimum, s.numel() // 64))
    # int32 indices where they fit: half the memory of int64, and gathers take either.
    index_dtype = torch.int32 if s.numel() < 2**31 else torch.int64
    if flat:
        pos_idx = torch.nonzero_static(counts.pos_mask, size=counts.num_pos).squeeze(1)
        walk = _Walk(True, s.numel(), None, block)
    else:
        cand_idx = torch.nonzero_static(counts.cand_mask, size=counts.num_cand).squeeze(1)
        cand_idx = cand_idx.to(index_dtype)
        in_cand = torch.nonzero_static(y.index_select(0, cand_idx) > 0, size=counts.num_pos)
        pos_idx = cand_idx.index_select(0, in_cand.squeeze(1))
        walk = _Walk(False, counts.num_cand, cand_idx, block)
    p, order = s.index_select(0, pos_idx).to(torch.float64).sort()
    pos_idx = pos_idx.index_select(0, order).to(index_dtype)
    del order
    centre = p[counts.num_pos // 2].clone()
    return _Positives(pos_idx, p.sub_(centre), y.index_select(0, pos_idx), centre), walk


# ----------------------------------------------------------------------------------------------
# Step 3: relevant negatives -> NFP_i of every positive


def _window_edges(p: torch.Tensor, delta: float):
    """Where a negative can fall relative to the sorted positives ``p`` (P,).

    Returns ``edges`` (sorted, the points at which some H(s_j - s_i) changes its piece) and, for
    every gap ``t`` between consecutive edges (``t = searchsorted(edges, s_j)``), ``lo[t]`` and
    ``hi[t]`` (int32, shape (len(edges) + 1,)): a negative in gap ``t`` has H = 1 for the positives
    ``[0, lo)``, H linear for ``[lo, hi)`` and H = 0 for ``[hi, P)``. With delta > 0, H is
    continuous, so a negative lying exactly on an edge may go to either side.
    """
    num_pos = p.numel()
    if delta == 0:
        # H(s_j - s_i) = [s_j >= s_i]: searchsorted(side="right") counts the positives with H = 1.
        gaps = torch.arange(num_pos + 1, dtype=torch.int32, device=p.device)
        return p, gaps, gaps
    edges, order = torch.cat([p + delta, p - delta]).sort(stable=True)
    is_upper = order < num_pos  # an edge p_i + delta: above it, positive i has H = 1
    del order
    lo = torch.zeros(2 * num_pos + 1, dtype=torch.int32, device=p.device)
    hi = torch.zeros_like(lo)
    torch.cumsum(is_upper, 0, dtype=torch.int32, out=lo[1:])
    torch.cumsum(is_upper.logical_not_(), 0, dtype=torch.int32, out=hi[1:])
    return edges, lo, hi


def _negatives_nfp(s, y, counts: _Counts, pos: _Positives, walk: _Walk, delta: float):
    """NFP_i (P,) float64 of every positive, and the gap of every walked entry (int16 or int32).

    Each relevant negative is located once among the positives' window edges; per gap, its count
    and the sum of (s_j + delta) are accumulated, then spread to the positives with suffix sums
    (H = 1 part) and difference arrays (linear part).
    """
    p = pos.p
    num_pos = p.numel()
    edges, lo, hi = _window_edges(p, delta)
    num_gaps = edges.numel() + 1
    # The gap of every walked entry, kept for the gradient pass: int16 where it fits (the flat walk
    # stores one per input entry).
    gap_dtype = torch.int16 if num_gaps <= torch.iinfo(torch.int16).max else torch.int32
    gap_of = torch.empty(walk.total, dtype=gap_dtype, device=s.device)
    # Counts are integers, kept exact (and small) in an integer dtype.
    count_dtype = torch.int32 if walk.total < 2**31 else torch.int64
    gap_cnt = torch.zeros(num_gaps, dtype=count_dtype, device=s.device)
    gap_sum = torch.zeros(num_gaps, dtype=torch.float64, device=s.device) if delta > 0 else None
    for idx, where in walk.chunks():
        s_chunk = s[idx]
        is_rel = y[idx] == 0
        if walk.flat:
            is_rel &= s_chunk >= counts.threshold
        s_neg = s_chunk.to(torch.float64) - pos.centre  # a new tensor: updated in place below
        gap = torch.searchsorted(edges, s_neg, side="right", out_int32=True)
        gap_of[where] = gap
        gap_cnt.index_add_(0, gap, is_rel.to(count_dtype))
        if delta > 0:
            gap_sum.index_add_(0, gap, s_neg.add_(delta).masked_fill_(is_rel.logical_not_(), 0.0))
    del edges
    # Positives [0, lo) of gap t have H = 1: NFP_i counts the gaps with lo > i.
    full = torch.zeros(num_pos + 1, dtype=count_dtype, device=s.device)
    full.index_add_(0, lo, gap_cnt).cumsum_(0)
    nfp = (full[-1] - full[:-1]).to(torch.float64)
    if delta > 0:
        # Positives [lo, hi) of gap t get sum_j (s_j + delta - s_i) / (2 delta): difference arrays.
        cnt = full.zero_().index_add_(0, lo, gap_cnt).index_add_(0, hi, gap_cnt, alpha=-1)
        cnt = cnt.cumsum_(0)[:-1]
        del gap_cnt
        win = torch.zeros(num_pos + 1, dtype=torch.float64, device=s.device)
        win.index_add_(0, lo, gap_sum).index_add_(0, hi, gap_sum, alpha=-1)
        del gap_sum
        in_window = win.cumsum_(0)[:-1].sub_(cnt * p).mul_(0.5 / delta).clamp_min_(0.0)
        # An empty window must add exactly 0, not the rounding noise of the running sum.
        nfp += in_window.masked_fill_(cnt == 0, 0.0)
    return nfp, gap_of, lo, hi


# ----------------------------------------------------------------------------------------------
# Step 4: the positive-positive sums


class _PairSums(NamedTuple):
    """Per positive (P,) float64, in logit order."""

    R: torch.Tensor  # sum_k H_ik: rank among positives, self term included
    loss_sort: torch.Tensor  # 0-dim: the mean of the sorting errors l_S(i)
    # The sorting part of |P| g_i: sum_{k: y_k > y_i} [D_k > eps] l_S(k) H_ki / D_k (the inflow
    # from higher-quality positives) - [D_i > eps] l_S(i), with D_i = sum_{k: y_k < y_i} H_ik.
    g_sort: torch.Tensor


def _sorting_error(R, C, D, E):
    """l_S = C/R - B/A with A = R - D, B = C - E, written without cancellation."""
    A = R - D  # >= H(0) > 0: the self term
    B = C - E
    return (A * E - B * D) / (A * R)


def _sorting_share(lS, D):
    """[D_k > eps] l_S(k) / D_k: the weight with which positive k spreads its sorting error."""
    return torch.where(D > _EPS, lS / D.clamp_min(_EPS), torch.zeros_like(lS))


def _pairs_dense(p, y, delta, budget: Optional[int] = None) -> _PairSums:
    """Positive-positive sums in row chunks of the dense matrix ``h[i, k] = H(s_k - s_i)``.

    ``p``: (P,) float64 sorted centred logits, ``y``: (P,) targets in the same order (any floating
    dtype: compared as is, summed in float64). ``R`` and ``C`` need no quality condition and come
    from prefix sums (:func:`_ranks_and_costs`). ``D``, ``E`` and the inflow need only the pairs
    with ``y_k < y_i``: with rows and columns in quality order those lie before row i's column, so
    a chunk of rows builds the columns up to its last row only (half the matrix in all).
    ``budget``: bytes that one chunk's temporaries may take (about 10 per matrix element; None:
    ``_BLOCK`` elements), unless that would need more than ``_DENSE_MAX_CHUNKS`` chunks.
    """
    num_pos = p.numel()
    R, C = _ranks_and_costs(p, y, delta)
    y, by_quality = y.sort(stable=True)  # everything below is in quality order
    p = p.index_select(0, by_quality)
    R_q, C_q = R.index_select(0, by_quality), C.index_select(0, by_quality)
    one_minus_y = 1.0 - y.to(torch.float64)
    values = torch.stack([torch.ones_like(one_minus_y), one_minus_y], dim=1)  # (P, 2)
    del one_minus_y
    lS = torch.empty_like(p)
    D = torch.empty_like(p)
    inflow = torch.zeros_like(p)
    block = _BLOCK if budget is None else min(_BLOCK, budget // 10)
    rows = max(1, block // num_pos, -(-num_pos // _DENSE_MAX_CHUNKS))
    if delta > 0:  # H(s_k - s_i) = clamp(s_k / (2 delta) - (s_i / (2 delta) - 1/2), 0, 1)
        scaled = p * (0.5 / delta)
        scaled_rows = scaled - 0.5
    for start in range(0, num_pos, rows):
        end = min(start + rows, num_pos)
        if delta > 0:
            h = (scaled[None, :end] - scaled_rows[start:end, None]).clamp_(0.0, 1.0)
        else:
            h = (p[None, :end] >= p[start:end, None]).to(p.dtype)
        h.masked_fill_(y[None, :end] >= y[start:end, None], 0.0)  # keep y_k < y_i only
        de = h @ values[:end]
        ls = _sorting_error(R_q[start:end], C_q[start:end], de[:, 0], de[:, 1])
        lS[start:end] = ls
        D[start:end] = de[:, 0]
        inflow[:end] += _sorting_share(ls, de[:, 0]) @ h
    g_sort = inflow.sub_(torch.where(D > _EPS, lS, 0.0))
    # back to logit order
    g_sort = torch.empty_like(g_sort).index_put_((by_quality,), g_sort)
    return _PairSums(R, lS.mean(), g_sort)


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n + 1, ...): sums of the first 0, 1, ..., n rows."""
    out = x.new_zeros((x.shape[0] + 1, *x.shape[1:]))
    torch.cumsum(x, 0, out=out[1:])
    return out


def _tree_chunk(num_pos: int, device: torch.device) -> int:
    """Queries (and positions) handled together in the quality tree: a fraction of the positives,
    so that per-chunk temporaries stay small next to the per-positive arrays (docs/benchmarks.md,
    "Peak memory": peak extra memory at most 2x the input). Larger on GPUs, where launches
    dominate."""
    minimum = _TREE_MIN_CHUNK.get(device.type, _TREE_MIN_CHUNK["cuda"])
    return max(minimum, -(-num_pos // _TREE_CHUNKS))


def _tree_levels(q_of: torch.Tensor, leaf_level: int):
    """The merge-sort tree over quality positions, one level at a time from the root down.

    ``q_of`` (P,) int32 is the quality position of each positive, indexed by logit rank. The
    level-l arrangement lists the positives in blocks of 2^l consecutive quality positions, each
    block in logit order. Yields ``(l, left_before, order)`` for l = top ... ``leaf_level``:
    ``order`` (P,) int32, the ranks in the level-l arrangement, and ``left_before`` (P + 1,) int32,
    for each position of the level-(l + 1) arrangement the number of positives before it that go to
    a left child (quality bit l is 0). A stable partition per block (one cumulative count) turns
    one arrangement into the next, so a level costs O(P) and only the current one is kept; the
    yielded tensors are reused by the next level.
    """
    num_pos = q_of.numel()
    device = q_of.device
    chunk = _tree_chunk(num_pos, device)
    order = torch.arange(num_pos, dtype=torch.int32, device=device)  # the root, in logit order
    left_before = torch.zeros(num_pos + 1, dtype=torch.int32, device=device)
    for level in range(num_pos.bit_length() - 1, leaf_level - 1, -1):
        goes_left = q_of.index_select(0, order).bitwise_and_(1 << level) == 0
        torch.cumsum(goes_left, 0, dtype=torch.int32, out=left_before[1:])
        new_order = torch.empty_like(order)
        for start in range(0, num_pos, chunk):
            # Within its parent block (first position 2B), a left-goer lands at B + (left-goers
            # before it), a right-goer at 2B + 2^l + (right-goers before it); B = left-goers of
            # the earlier blocks.
            end = min(start + chunk, num_pos)
            x = torch.arange(start, end, dtype=torch.int32, device=device)
            before = left_before[start:end]
            to_right = x + (1 << level) - before
            dest = to_right - before  # to_right - to_left, without the shared 2B
            dest.mul_(goes_left[start:end]).neg_().add_(to_right)
            dest.add_(x.bitwise_right_shift_(level + 1).bitwise_left_shift_(level))
            new_order.index_put_((dest,), order[start:end])
        order = new_order
        del goes_left, new_order
        yield level, left_before, order


def _tree_walk(q_of, bound, ptr, fill, num_cols: int, *, suffix: bool, leaf_level: int):
    """Walks every query down the quality tree; yields, per level and chunk of queries, prefix sums
    at the edges of the positives that the query selects at that level.

    Positives are indexed by logit rank; ``q_of`` (P,) int32 is their quality position. Query ``i``
    selects the positives with ``q_of < bound[i]`` (``suffix=False``) or ``q_of >= bound[i]``
    (``suffix=True``) and, per threshold ``x``, those of them with logit rank below ``x``. At each
    level the sibling of its path (the left child where the path goes right, or the right child
    where it goes left) is selected whole; the leaf holding ``bound[i]`` is left to the caller.
    ``ptr`` (T, P) int32 holds the thresholds on entry and is overwritten: per query and
    threshold, a position in the current arrangement, the node's first position plus the number of
    its positives below the threshold (at the root, the threshold itself). ``fill(out, order)``
    writes the K = ``num_cols`` summed values of the positives, taken in the level's arrangement
    ``order`` (int32 ranks), into ``out`` (P, K) float64.

    Yields ``(rows, edges, at)`` for a slice ``rows`` of the queries: ``edges`` (T + 1, q) int32,
    positions in the level's arrangement: for ``suffix=False`` the selected left child's position
    below each threshold, then its end; for ``suffix=True`` the selected right child's start, then
    its position below each threshold (all equal to the node's start, or the child's, where
    nothing is selected). Differences of ``edges`` count the selected positives between thresholds,
    and differences of ``at`` (T + 1, q, K) float64, the level's prefix sums at ``edges``, sum
    their values; summed over the levels they cover every selected positive outside the leaf.
    ``at`` is a buffer that the next step overwrites.
    """
    num_pos = q_of.numel()
    chunk = _tree_chunk(num_pos, q_of.device)
    cum = torch.zeros(num_pos + 1, num_cols, dtype=torch.float64, device=q_of.device)
    at_buffer = cum.new_empty((ptr.shape[0] + 1) * min(chunk, num_pos), num_cols)
    for level, left_before, order in _tree_levels(q_of, leaf_level):
        size = 1 << level
        # The values in this level's arrangement, then their prefix sums, in place.
        fill(cum[1:], order)
        cum[1:].cumsum_(0)
        for start in range(0, num_pos, chunk):
            rows = slice(start, start + chunk)
            b = bound[rows]
            # (T, q) layouts throughout: per-query values broadcast along the outer dimension,
            # which keeps every elementwise kernel contiguous.
            went_right = b.bitwise_and(size).bool()
            half = (b >> (level + 1)) << level  # half the parent's first position
            node = half * 2
            at_ptr = ptr[:, rows]
            # Left-goers before the pointer: where it lands in the left child, or in the right one.
            lb = left_before.index_select(0, at_ptr.reshape(-1)).view(at_ptr.shape)
            to_left = lb + half
            to_right = (half + size) - lb
            to_right += at_ptr
            if suffix:  # the right child, up to the pointer, where the path goes left
                # (a right child past the last quality position is empty: clamped to P)
                to_right.clamp_max_(num_pos)
                first = (node + size).clamp_max_(num_pos)
                edges = torch.cat([first[None], torch.where(went_right, first, to_right)])
            else:  # the left child (full, since a right one exists) where the path goes right
                whole = torch.where(went_right, node + size, node)
                edges = torch.cat([torch.where(went_right, to_left, node), whole[None]])
            at_ptr.copy_(torch.where(went_right, to_right, to_left))
            at = at_buffer[: edges.numel()]
            torch.index_select(cum, 0, edges.view(-1), out=at)
            yield rows, edges, at.view(*edges.shape, num_cols)


def _fill_lower(y, p, out, order):
    """The columns 1 - y, s, (1 - y) s (only 1 - y where ``p`` is None) in the arrangement
    ``order``, written into ``out`` (P, K) float64 (see :func:`_tree_walk`)."""
    out[:, 0] = y.index_select(0, order)
    out[:, 0].neg_().add_(1.0)
    if p is not None:
        out[:, 1] = p.index_select(0, order)
        torch.mul(out[:, 0], out[:, 1], out=out[:, 2])


def _fill_higher(share, p, out, order):
    """The columns share, share s (only share where ``p`` is None), as :func:`_fill_lower`."""
    out[:, 0] = share.index_select(0, order)
    if p is not None:
        torch.mul(out[:, 0], p.index_select(0, order), out=out[:, 1])


def _differences_(at: torch.Tensor) -> torch.Tensor:
    """``at[1:] - at[:-1]`` along the first dimension, computed in place (returns a view)."""
    for j in range(at.shape[0] - 1, 0, -1):
        at[j] -= at[j - 1]
    return at[1:]


def _quality_leaves(columns, by_quality, leaf_level: int):
    """The (P,) float64 ``columns`` side by side in quality order, padded with zeros and cut into
    leaves of B = 2^leaf_level quality positions: (P / B, B, K)."""
    num_pos = by_quality.numel()
    size = 1 << leaf_level
    leaves = columns[0].new_zeros(-(-num_pos // size) * size, len(columns))
    for col, values in enumerate(columns):
        leaves[:num_pos, col] = values.index_select(0, by_quality)
    return leaves.view(-1, size, len(columns))


def _leaf_selection(bound, num_pos: int, suffix: bool, leaf_level: int):
    """Per query, the leaf holding ``bound`` and which of its 2^leaf_level quality positions lie in
    the query's range: ``(leaf, selected)``, (q,) int32 and (q, B) bool."""
    leaf = bound >> leaf_level
    offsets = torch.arange(1 << leaf_level, dtype=bound.dtype, device=bound.device)
    qpos = (leaf << leaf_level)[:, None] + offsets
    selected = qpos >= bound[:, None] if suffix else qpos < bound[:, None]
    return leaf.clamp_max(-(-num_pos // (1 << leaf_level)) - 1), selected & (qpos < num_pos)


def _leaf_sums(leaves, bound, p, delta, suffix: bool, leaf_level: int, block: int):
    """Per query, the sums of H and of H * value over the selected positives of its leaf: (P, 2).

    ``leaves`` (P / B, B, 2) holds (logit, value) per leaf (:func:`_quality_leaves`). H is
    ``H(s_k - s_i)`` for the lower-quality side and ``H(s_i - s_k)`` for the higher one
    (``suffix``). Queries are taken in chunks of about ``block`` (query, leaf position) pairs.
    """
    num_pos = p.numel()
    out = p.new_empty(num_pos, 2)
    rows = max(64, block >> leaf_level)
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
    """For targets ``y`` (P,): the quality position of each entry in the stable order by increasing
    y, and per entry the first and one-past-last quality positions of its tie group (equal targets
    are never "lower"); all (P,) int32."""
    num_pos = y.numel()
    y_sorted, by_quality = y.sort(stable=True)
    positions = torch.arange(num_pos, dtype=torch.int32, device=y.device)
    q_of = torch.empty_like(positions).index_put_((by_quality,), positions)
    del by_quality
    first = torch.ones(num_pos, dtype=torch.bool, device=y.device)
    torch.ne(y_sorted[1:], y_sorted[:-1], out=first[1:])
    del y_sorted
    last = torch.ones_like(first)
    last[:-1] = first[1:]
    tie_start = torch.where(first, positions, 0).cummax(0).values.index_select(0, q_of)
    tie_end = torch.where(last, positions + 1, num_pos).flip(0).cummin(0).values.flip(0)
    return q_of, tie_start, tie_end.index_select(0, q_of)


def _by_quality(q_of):
    """The inverse permutation of ``q_of``: the logit rank at each quality position (int32)."""
    positions = torch.arange(q_of.numel(), dtype=torch.int32, device=q_of.device)
    return torch.empty_like(positions).index_put_((q_of,), positions)


def _windows(p, delta):
    """Logit-rank windows (int32, (P,) each) of the sorted positives ``p``: with delta > 0,
    ``lo_i`` = #{k: s_k <= s_i - delta} and ``hi_i`` = #{k: s_k <= s_i + delta}, so ``H(s_k - s_i)``
    is 0 for ranks below lo, linear on [lo, hi) and 1 from hi on; with delta = 0, the first rank
    with s_k >= s_i and the first with s_k > s_i."""
    if delta > 0:
        lo = torch.searchsorted(p, p - delta, side="right", out_int32=True)
        hi = torch.searchsorted(p, p + delta, side="right", out_int32=True)
    else:
        lo = torch.searchsorted(p, p, side="left", out_int32=True)
        hi = torch.searchsorted(p, p, side="right", out_int32=True)
    return lo, hi


def _lower_quality_sums(q_of, tie_start, p, y, delta, leaf_level: int, leaf_block: int):
    """D_i and E_i (P,) float64 over the positives of lower quality (before i's tie group): the
    tree walk above the leaves, then the leaf holding ``tie_start[i]``, summed with H itself."""
    D = torch.zeros_like(p)
    E = torch.zeros_like(p)
    if delta > 0:
        inv = 0.5 / delta
        # edges: below lo, below hi, the child's end; columns: 1 - y, s, (1 - y) s
        walk = _tree_walk(
            q_of,
            tie_start,
            torch.stack(_windows(p, delta)),
            functools.partial(_fill_lower, y, p),
            3,
            suffix=False,
            leaf_level=leaf_level,
        )
        for rows, edges, at in walk:
            count = edges[1:] - edges[:-1]  # in the window, above it
            sums = _differences_(at)
            s_lo = p[rows] - delta
            D[rows] += count[1] + (sums[0, :, 1] - count[0] * s_lo) * inv
            E[rows] += sums[1, :, 0] + (sums[0, :, 2] - sums[0, :, 0] * s_lo) * inv
    else:
        # edges: below lo, the child's end; column: 1 - y
        walk = _tree_walk(
            q_of,
            tie_start,
            _windows(p, delta)[0][None],
            functools.partial(_fill_lower, y, None),
            1,
            suffix=False,
            leaf_level=leaf_level,
        )
        for rows, edges, at in walk:
            D[rows] += edges[1] - edges[0]
            E[rows] += at[1, :, 0] - at[0, :, 0]
    del walk
    leaves = _quality_leaves((p, 1.0 - y.to(torch.float64)), _by_quality(q_of), leaf_level)
    leaf_sums = _leaf_sums(leaves, tie_start, p, delta, False, leaf_level, leaf_block)
    D.clamp_min_(0.0).add_(leaf_sums[:, 0])  # the tree part may round below 0 when empty
    E.clamp_min_(0.0).add_(leaf_sums[:, 1])
    return D, E


def _higher_quality_inflow_(inflow, q_of, tie_end, p, share, delta, leaf_level, leaf_block):
    """Adds to ``inflow`` (P,) the sums over the positives k of higher quality (from the end of
    i's tie group on) of ``share[k] * H(s_i - s_k)``: tree walk, then the leaf holding
    ``tie_end[i]``."""
    lo, hi = _windows(p, delta)
    if delta > 0:
        inv = 0.5 / delta
        # edges: the child's start, below lo, below hi; columns: share, share s
        walk = _tree_walk(
            q_of,
            tie_end,
            torch.stack([lo, hi]),
            functools.partial(_fill_higher, share, p),
            2,
            suffix=True,
            leaf_level=leaf_level,
        )
        del lo, hi
        for rows, _, at in walk:
            sums = _differences_(at)  # H = 1, the window
            inflow[rows] += (
                sums[0, :, 0] + (sums[1, :, 0] * (p[rows] + delta) - sums[1, :, 1]) * inv
            )
    else:
        walk = _tree_walk(
            q_of,
            tie_end,
            hi[None],
            functools.partial(_fill_higher, share, None),
            1,
            suffix=True,
            leaf_level=leaf_level,
        )
        del lo, hi
        for rows, _, at in walk:
            inflow[rows] += at[1, :, 0] - at[0, :, 0]
    del walk
    leaves = _quality_leaves((p, share), _by_quality(q_of), leaf_level)
    inflow += _leaf_sums(leaves, tie_end, p, delta, True, leaf_level, leaf_block)[:, 1]
    return inflow


def _ranks_and_costs(p, y, delta):
    """R_i and C_i (P,) float64 over every positive (no quality condition): ``R_i = sum_k H_ik``
    and ``C_i = sum_k H_ik (1 - y_k)``, from prefix sums in logit order."""
    num_pos = p.numel()
    lo, hi = _windows(p, delta)
    one_minus_y = 1.0 - y.to(torch.float64)
    cum = _exclusive_cumsum(one_minus_y)
    if delta == 0:
        return (num_pos - lo).to(torch.float64), cum[-1] - cum.index_select(0, lo)
    inv = 0.5 / delta
    C = cum[-1] - cum.index_select(0, hi)
    win_u = cum.index_select(0, hi) - cum.index_select(0, lo)
    cum = _exclusive_cumsum(one_minus_y.mul_(p))
    del one_minus_y
    win_w = cum.index_select(0, hi) - cum.index_select(0, lo)
    C += (win_w - win_u * (p - delta)) * inv
    del win_u, win_w
    cum = _exclusive_cumsum(p)
    win_p = cum.index_select(0, hi) - cum.index_select(0, lo)
    R = (num_pos - hi) + (win_p - (hi - lo) * (p - delta)) * inv
    return R, C


def _pairs_tree(p, y, delta, budget: Optional[int] = None) -> _PairSums:
    """Positive-positive sums in O(P log P) with the quality tree (same inputs as the dense pass).

    With delta > 0, ``H(s_k - s_i)`` is 1 for ranks ``k >= hi_i`` (s_k > s_i + delta), linear for
    ``lo_i <= k < hi_i`` and 0 below; ``H(s_i - s_k)`` is 1 for ``k < lo_i``, linear for
    ``lo_i <= k < hi_i`` and 0 above. The window leaves out s_k = s_i - delta, where H is 0, so an
    empty selection sums to exactly 0 (the eps tests see exact zeros where the dense pass does).
    Leaves of 2^_LEAF_LEVEL quality positions are summed directly, with H itself. Each level's
    sums are folded into D, E and the inflow at once, and per-positive arrays are dropped as soon
    as they are used, so that the peak memory stays a small multiple of P (8-byte words).
    ``budget``: bytes that one chunk of the leaf sums may take, about 40 per (query, leaf
    position) pair; at least twice the tree walk's chunk of pairs (None: that minimum). Larger
    chunks mean fewer kernel launches.
    """
    num_pos = p.numel()
    leaf_block = max((budget or 0) // 40, 2 * _tree_chunk(num_pos, p.device))
    q_of, tie_start, tie_end = _quality_positions(y)
    leaf_level = min(_LEAF_LEVEL if num_pos > _WIDE_LEAF_MAX_POS else 6, num_pos.bit_length())
    D, E = _lower_quality_sums(q_of, tie_start, p, y, delta, leaf_level, leaf_block)
    del tie_start
    R, C = _ranks_and_costs(p, y, delta)
    lS = _sorting_error(R, C, D, E)
    del C, E
    share = _sorting_share(lS, D)
    # The sorting part of |P| g_i starts as -[D_i > eps] l_S(i); the inflow is added to it.
    g_sort = torch.where(D > _EPS, lS, 0.0).neg_()
    del D
    loss_sort = lS.mean()
    del lS
    _higher_quality_inflow_(g_sort, q_of, tie_end, p, share, delta, leaf_level, leaf_block)
    return _PairSums(R, loss_sort, g_sort)


def _positive_pairs(p, y, delta, method: str, budget: Optional[int] = None) -> _PairSums:
    """The dense or the tree pass (``method``: "auto", "dense" or "tree"); ``y`` (P,) in any
    floating dtype (compared as is, summed in float64); ``budget``: bytes that one chunk's
    temporaries may take (None: each pass's default)."""
    if method == "auto":
        crossover = _TREE_MIN_POS.get(p.device.type, _TREE_MIN_POS["cuda"])
        method = "tree" if p.numel() >= crossover else "dense"
    if method == "tree":
        return _pairs_tree(p, y, delta, budget)
    return _pairs_dense(p, y, delta, budget)


# ----------------------------------------------------------------------------------------------
# Step 5: gradients


def _negative_coefficients(w, p, lo, hi, delta: float):
    """Per gap ``t`` between the window edges (:func:`_window_edges`): ``alpha[t] + beta[t] * s_j``
    is the gradient of a relevant negative ``j`` in gap ``t`` (``s_j`` centred like ``p``), where
    |P| g_j = sum_i w_i H(s_j - s_i) with w_i = l_R(i) / NFP_i = 1 / rank(i) (where NFP_i > eps).

    With prefix sums W of w and WS of w * s over the sorted positives, the positives [0, lo) give
    W[lo] and the window [lo, hi) gives ((s_j + delta) (W[hi] - W[lo]) - (WS[hi] - WS[lo])) / 2
    delta, so alpha = A[lo] + B[hi] with A = W / 2 + WS / (2 delta), B = W / 2 - WS / (2 delta).
    Gaps are taken in chunks, so no temporary of the gaps' size is made. ``beta`` is None when
    delta = 0.
    """
    num_pos = p.numel()
    num_gaps = lo.numel()
    W = _exclusive_cumsum(w)
    if delta == 0:
        return W.index_select(0, lo).div_(num_pos), None
    alpha = torch.empty(num_gaps, dtype=torch.float64, device=p.device)
    beta = torch.empty_like(alpha)
    block = max(_NEG_BLOCK, -(-num_gaps // 8))
    for start in range(0, num_gaps, block):
        gaps = slice(start, start + block)
        torch.index_select(W, 0, hi[gaps], out=beta[gaps])
        beta[gaps] -= W.index_select(0, lo[gaps])
    beta *= 0.5 / (delta * num_pos)
    WS = _exclusive_cumsum(w * p).mul_(0.5 / delta)
    W *= 0.5
    A = W + WS
    B = W.sub_(WS)
    del WS
    for start in range(0, num_gaps, block):
        gaps = slice(start, start + block)
        torch.index_select(A, 0, lo[gaps], out=alpha[gaps])
        alpha[gaps] += B.index_select(0, hi[gaps])
    return alpha.div_(num_pos), beta


def _write_negative_grads(grad, s, y, counts, centre, walk, gap_of, alpha, beta):
    """Writes every walked entry's gradient into ``grad``: ``alpha + beta * s_j`` of its gap for
    a relevant negative, 0 for any other entry (positives are written afterwards)."""
    for idx, where in walk.chunks():
        gap = gap_of[where].to(torch.int32)
        s_chunk = s[idx]
        is_rel = y[idx] == 0
        if walk.flat:
            is_rel &= s_chunk >= counts.threshold
        g_neg = alpha.index_select(0, gap)
        if beta is not None:
            g_neg += beta.index_select(0, gap) * (s_chunk.to(torch.float64) - centre)
        grad[idx] = g_neg.masked_fill_(is_rel.logical_not_(), 0.0).to(grad.dtype)


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
    if counts.num_pos == 0:
        return zero, zero.clone(), torch.zeros_like(s)
    pos, walk = _positives_and_walk(s, y, counts)
    # Each step drops what the next ones do not need, so that the largest temporaries (those of
    # the positive-positive pass, then the gradient) never live at the same time.
    counts = counts._replace(pos_mask=None, cand_mask=None)
    targets = pos.y
    pos = pos._replace(y=None)
    # Chunk temporaries of the positive-positive pass within 1/8 of the bytes of float32 logits
    # and targets (8 per entry).
    pair = _positive_pairs(pos.p, targets, delta, pairs, budget=s.numel())
    del targets
    nfp, gap_of, lo, hi = _negatives_nfp(s, y, counts, pos, walk, delta)

    num_pos = pos.p.numel()
    rank = pair.R.add_(nfp)
    lR = nfp / rank
    has_fp = nfp > _EPS
    del nfp
    loss_rank, loss_sort = lR.mean(), pair.loss_sort
    w = rank.reciprocal_().masked_fill_(~has_fp, 0.0)
    g_pos = pair.g_sort.sub_(lR.masked_fill_(~has_fp, 0.0)).div_(num_pos)
    del pair, rank, lR, has_fp
    alpha, beta = _negative_coefficients(w, pos.p, lo, hi, delta)
    del w, lo, hi
    pos_idx, centre = pos.idx, pos.centre
    del pos
    # The flat walk writes every entry; the compacted one only the candidates.
    grad = torch.empty_like(s) if walk.flat else torch.zeros_like(s)
    _write_negative_grads(grad, s, y, counts, centre, walk, gap_of, alpha, beta)
    del alpha, beta, gap_of, walk
    grad[pos_idx] = g_pos.to(grad.dtype)
    return loss_rank, loss_sort, grad
