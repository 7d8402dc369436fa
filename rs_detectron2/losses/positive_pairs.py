"""The positive-positive sums of Rank & Sort Loss, exact, without a loop over positives.

Notation of Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation", ICCV
2021, Sec. 3. For positives i, k with logits ``s`` and qualities ``y`` (the targets),
``H_ik = H(s_k - s_i)`` (the smoothed step):

    R_i = sum_k H_ik                        (rank among positives, self term H(0) included)
    C_i = sum_k H_ik (1 - y_k)
    D_i = sum_{k: y_k < y_i} H_ik,  E_i = sum_{k: y_k < y_i} H_ik (1 - y_k)
    l_S(i) = C_i / R_i - (C_i - E_i) / (R_i - D_i)        (current minus target sorting error)

and the sorting part of the identity update, per positive i,

    |P| g_i = -[D_i > eps] l_S(i) + sum_{k: y_k > y_i} [D_k > eps] l_S(k) H_ki / D_k

(eps = 1e-10 as in the authors' code). ``R`` and ``C`` need no quality condition: prefix sums in
logit order (:func:`~rs_detectron2.losses.ranking_core.window_sums`). ``D``, ``E`` and the inflow
are two-dimensional (a quality condition and H) and take one of two exact routes:

- ``"dense"``: row chunks of the matrix of H values, rows and columns in quality order so that
  only the lower-quality pairs (the columns before each row) are built: P^2 / 2 entries, O(P^2)
  time, O(P * chunk) memory;
- ``"tree"``: the quality condition ``y_k < y_i`` is a prefix (``y_k > y_i`` a suffix) of the
  positives ordered by quality, so it is answered by a merge-sort tree over quality positions whose
  nodes hold their positives in logit order (a wavelet-tree descent: one level at a time, each
  query following its path to a leaf with counts and prefix sums, no binary search per node).
  H is piecewise linear, so a window of logits contributes sums of 1, s and (1 - y) found from
  prefix sums. O(P log P) time and O(P) memory. On a GPU the tree takes its levels side by side
  instead (:func:`_selected_sums`: one batched binary search per threshold in every level's
  arrangement, one gather-and-sum over the levels): O(P log^2 P) work in groups of levels under a
  memory budget, but a few dozen operations per group, where the level-by-level walk takes about
  a hundred per level (``Blocks.tree_all_levels``).

All sums are in float64; neither pass synchronises with the host, and the loops run over chunks and
over the log2 P levels of the tree, never over positives.
"""

import functools
from typing import NamedTuple, Optional

import torch

from .ranking_core import blocks_for, step, window_sums, windows

__all__ = ["EPS", "PAIR_METHODS", "PairSums", "pair_method", "positive_pairs"]

# The authors' threshold below which a pmf denominator (D_i, NFP_i) counts as zero.
EPS = 1e-10
PAIR_METHODS = ("auto", "dense", "tree")
# From this many positives on, the tree pass replaces the dense one (the crossover measured with
# benchmarks/bench_rank_sort.py --crossover).
_TREE_MIN_POS = {"cpu": 2048, "cuda": 2048}
# The tree pass sums leaves of 2^_LEAF_LEVEL quality positions directly, and leaves of 64 up to
# _WIDE_LEAF_MAX_POS positives (fewer levels: kernel launches dominate there).
_LEAF_LEVEL = 4
_WIDE_LEAF_MAX_POS = 8192
# The chunk sizes of both passes: ranking_core.BLOCKS (per device type).


class PairSums(NamedTuple):
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


def _sorting_error_pairs(RC, DE, out):
    """:func:`_sorting_error` of (n, 2) columns (R, C) and (D, E), in fewer operations, written
    into ``out`` (n,)."""
    AB = RC - DE  # (A, B)
    cross = AB * DE.flip(1)  # (A E, B D)
    return torch.div(cross[:, 0] - cross[:, 1], AB[:, 0] * RC[:, 0], out=out)


def _sorting_share(lS, D):
    """[D_k > eps] l_S(k) / D_k: the weight with which positive k spreads its sorting error."""
    return torch.where(D > EPS, lS / D, 0.0)  # (where D = 0, the quotient is not taken)


def _ranks_and_costs(p, y, delta):
    """R_i and C_i (P,) float64 over every positive (no quality condition): ``R_i = sum_k H_ik``
    and ``C_i = sum_k H_ik (1 - y_k)``, from prefix sums in logit order."""
    bounds = windows(p, delta)
    R = window_sums(p, torch.ones_like(p), delta, bounds)
    C = window_sums(p, 1.0 - y.to(torch.float64), delta, bounds)
    return R, C


def _pairs_matrix(p, y, delta) -> PairSums:
    """Positive-positive sums from the whole matrix ``h[i, k] = H(s_k - s_i)`` at once (inputs as
    :func:`_pairs_dense`): R and C are its row sums, D and E those of the pairs with y_k < y_i,
    and the inflow a product with the masked matrix; no loop and no reordering, so the fewest
    kernel launches, for P^2 matrix elements (about 9 bytes each)."""
    if delta > 0:  # H(s_k - s_i) = clamp(s_k / (2 delta) - (s_i / (2 delta) - 1/2), 0, 1)
        scaled = p * (0.5 / delta)
        h = (scaled - (scaled - 0.5)[:, None]).clamp_(0.0, 1.0)
    else:
        h = (p >= p[:, None]).to(p.dtype)
    values = _ones_and_costs(y)
    R, C = (h @ values).unbind(1)
    h.masked_fill_(y >= y[:, None], 0.0)  # keep y_k < y_i only
    D, E = (h @ values).unbind(1)
    lS = _sorting_error(R, C, D, E)
    share = _sorting_share(lS, D)
    # -[D_i > eps] l_S(i) as -share_i D_i (= l_S(i) up to rounding, 0 where share is), plus the
    # inflow from the higher-quality positives
    g_sort = torch.addcmul(share @ h, share, D, value=-1.0)
    return PairSums(R, lS.mean(), g_sort)


def _ones_and_costs(y):
    """(P, 2) float64 columns 1 and 1 - y: the values whose H-weighted sums are R and C (D and E
    over the lower-quality positives)."""
    values = torch.ones(y.numel(), 2, dtype=torch.float64, device=y.device)
    values[:, 1].sub_(y)
    return values


def _pairs_dense(p, y, delta, budget: Optional[int] = None) -> PairSums:
    """Positive-positive sums in row chunks of the dense matrix ``h[i, k] = H(s_k - s_i)``.

    ``p``: (P,) float64 sorted centred logits, ``y``: (P,) targets in the same order (any floating
    dtype: compared as is, summed in float64). ``R`` and ``C`` need no quality condition and come
    from prefix sums (:func:`_ranks_and_costs`). ``D``, ``E`` and the inflow need only the pairs
    with ``y_k < y_i``: with rows and columns in quality order those lie before row i's column, so
    a chunk of rows builds the columns up to its last row only (half the matrix in all).
    ``budget``: bytes that one chunk's temporaries may take (about 10 per matrix element; None:
    no bound but the device's :attr:`~rs_detectron2.losses.ranking_core.Blocks.pair_max_elements`),
    unless that would need more than its ``pair_max_chunks`` chunks. Where the whole matrix fits,
    :func:`_pairs_matrix` computes it at once.
    """
    num_pos = p.numel()
    blocks = blocks_for(p.device)
    block = blocks.pair_max_elements
    if budget is not None:
        block = min(block, budget // 10)
    if num_pos * num_pos <= block:
        return _pairs_matrix(p, y, delta)
    # R and C (no quality condition) from prefix sums in logit order, side by side
    values = _ones_and_costs(y)
    RC = window_sums(p, values, delta)
    y, by_quality = y.sort(stable=True)  # everything below is in quality order
    p = p.index_select(0, by_quality)
    values = values.index_select(0, by_quality)
    RC_q = RC.index_select(0, by_quality)
    DE = torch.empty_like(values)  # D and E, side by side
    lS = torch.empty_like(p)
    inflow = torch.zeros_like(p)
    rows = max(1, block // num_pos, -(-num_pos // blocks.pair_max_chunks))
    if delta > 0:  # H(s_k - s_i) = clamp(s_k / (2 delta) - (s_i / (2 delta) - 1/2), 0, 1)
        row_values = p * (0.5 / delta)
        column = (row_values - 0.5)[:, None]
    else:
        row_values, column = p, p[:, None]
    y_column = y[:, None]
    # Few operations per chunk: each is a kernel launch on a GPU.
    for start in range(0, num_pos, rows):
        end = min(start + rows, num_pos)
        if delta > 0:
            h = (row_values[:end] - column[start:end]).clamp_(0.0, 1.0)
        else:
            h = (row_values[:end] >= column[start:end]).to(p.dtype)
        h.masked_fill_(y[:end] >= y_column[start:end], 0.0)  # keep y_k < y_i only
        de = torch.mm(h, values[:end], out=DE[start:end])
        ls = _sorting_error_pairs(RC_q[start:end], de, out=lS[start:end])
        inflow[:end].addmv_(h.t(), _sorting_share(ls, de[:, 0]))
    g_sort = inflow.sub_(torch.where(DE[:, 0] > EPS, lS, 0.0))
    # back to logit order
    g_sort = torch.empty_like(g_sort).index_put_((by_quality,), g_sort)
    return PairSums(RC[:, 0], lS.mean(), g_sort)


def _tree_chunk(num_pos: int, device: torch.device) -> int:
    """Queries (and positions) handled together in the quality tree: a fraction of the positives,
    so that per-chunk temporaries stay small next to the per-positive arrays (the whole loss keeps
    its peak extra memory within twice the input). Larger on GPUs, where launches dominate."""
    blocks = blocks_for(device)
    return max(blocks.tree_min_chunk, -(-num_pos // blocks.tree_chunks))


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
            h = step(p[start:end, None] - leaf_rows[:, :, 0], delta)
        else:
            h = step(leaf_rows[:, :, 0] - p[start:end, None], delta)
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


def _quality_positions_by_search(y):
    """For targets ``y`` (P,): the quality position of each entry in the stable order by increasing
    y, and per entry the first and one-past-last quality positions of its tie group (equal targets
    are never "lower": the number of targets below it, and not above it); all (P,) int32. As
    :func:`_quality_positions`, in 5 operations instead of 22 (binary searches: slower on a CPU,
    where the level-by-level tree uses the other)."""
    y_sorted, by_quality = y.sort(stable=True)
    q_of = by_quality.argsort().to(torch.int32)  # the inverse permutation
    del by_quality
    tie_start = torch.searchsorted(y_sorted, y, side="left", out_int32=True)
    tie_end = torch.searchsorted(y_sorted, y, side="right", out_int32=True)
    return q_of, tie_start, tie_end


def _by_quality(q_of):
    """The inverse permutation of ``q_of``: the logit rank at each quality position (int32)."""
    positions = torch.arange(q_of.numel(), dtype=torch.int32, device=q_of.device)
    return torch.empty_like(positions).index_put_((q_of,), positions)


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
            torch.stack(windows(p, delta)),
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
            windows(p, delta)[0][None],
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
    lo, hi = windows(p, delta)
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


def _pairs_tree(p, y, delta, budget: Optional[int] = None) -> PairSums:
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
    g_sort = torch.where(D > EPS, lS, 0.0).neg_()
    del D
    loss_sort = lS.mean()
    del lS
    _higher_quality_inflow_(g_sort, q_of, tie_end, p, share, delta, leaf_level, leaf_block)
    return PairSums(R, loss_sort, g_sort)


# ----------------------------------------------------------------------------------------------
# The quality tree with every level at once (few operations: the GPU path)


def _selected_sums(q_of, bound, thresholds, values, budget: int, *, suffix: bool):
    """Per query i, the sums of ``values`` over the positives k selected by ``bound[i]`` (those
    with ``q_of[k] < bound[i]``, or ``>= bound[i]`` with ``suffix``) and with logit rank below
    each threshold, from a merge-sort tree over quality positions with its levels side by side.

    The selected quality positions are a union of aligned blocks, at most one per level l (the
    sibling of the path to ``bound``, 2^l positions). The tree's level-l arrangement lists the
    positives by block (``q >> l``), each block in logit order: one batched binary search per
    threshold finds every level's position of ``(block, rank)``, and prefix sums of the values in
    that arrangement sum the block's positives below it. O(P log^2 P) work; levels go in groups
    under the memory budget, and the operations grow with the number of groups, not with P.

    Args:
        q_of: (P,) quality position (0 ... P - 1) of each positive, indexed by logit rank.
        bound: (P,) per query; >= 1 with ``suffix``.
        thresholds: T (P,) tensors: logit ranks per query.
        values: (P, C) float64 per positive, indexed by logit rank.
        budget: bytes that one group of levels may take (one level at least).
        suffix: select ``q_of >= bound`` instead of ``q_of < bound``.
    Returns:
        ``(below, whole, sums)``, summed over the levels: ``below`` (T, P) int, the edges below
        each threshold; ``whole`` (P,) int, the edge of the selected blocks' ends (their starts
        with ``suffix``); ``sums`` (T + 1, P, C) float64 at the edges in order (the blocks'
        starts, below each threshold; or below each threshold, their ends). Differences of
        edges count and sum the selected positives between them.
    """
    num_pos, num_cols = values.shape
    num_levels = max(1, (num_pos - 1).bit_length())  # blocks of 2^l positions, 2^L >= P
    device = values.device
    # keys block * P + rank (blocks up to 2P / 2^l) fit int32 up to P = 32767
    dtype = torch.int32 if 2 * num_pos * num_pos < 2**31 else torch.int64
    size = 4 if dtype == torch.int32 else 8
    q_of = q_of.to(dtype)
    # with suffix, the positions after bound - 1: the right siblings where its path goes left
    bound = bound.to(dtype) - 1 if suffix else bound.to(dtype)
    thresholds = torch.stack(thresholds).to(dtype)  # (T, P)
    num_edges = len(thresholds) + 1
    ranks = torch.arange(num_pos, dtype=dtype, device=device)
    padded = torch.nn.functional.pad(values, (0, 0, 1, 0))  # a zero row first
    # bytes per (level, position): the value table, the keys (or the edges), one edge's bags
    per_level = (8 * num_cols + num_edges * size + 8 + size) * num_pos
    group = max(1, budget // per_level)
    bags = None  # the bags' offsets, for a group of ``group`` levels
    below = whole = sums = None
    for first in range(0, num_levels, group):
        # (g, 1, 1): per-level values broadcast against (1, P) per query and (T, P) per threshold
        levels = torch.arange(first, min(first + group, num_levels), dtype=dtype, device=device)
        levels = levels.view(-1, 1, 1)
        num_group = levels.shape[0]
        # Each level's arrangement as sorted keys block * P + rank, (g, 1, P).
        keys = (q_of >> levels).mul_(num_pos).add_(ranks).sort(dim=-1).values
        # (g, 1, P + 1, C): level l's sums of its first j positives (the zero row of ``padded``
        # first), cumulated in place; row l (P + 1) + j of the flat table
        table = padded[torch.nn.functional.pad(keys.remainder(num_pos).add_(1), (1, 0))]
        table.cumsum_(2)
        # Per level and query (g, 1, P): the sibling block of the query's path, where it is
        # selected, and the edges of its positives in the level's arrangement
        path = bound >> levels
        if suffix:  # the right sibling, where the path goes left and the sibling exists
            block = path + 1
            edge = block << levels  # its start
            selected = (path.bitwise_and_(1) == 0).logical_and_(edge < num_pos)
        else:  # the left sibling, where the path goes right
            block = path - 1
            edge = (path << levels).clamp_max_(num_pos)  # its end
            selected = path.bitwise_and_(1)  # 1 where selected
        del path
        # below each threshold: the position of the key block * P + threshold, (g, T, P)
        queries = block.mul_(num_pos) + thresholds
        del block
        found = torch.searchsorted(keys, queries.view(num_group, 1, -1), out_int32=size == 4)
        del keys, queries
        # Each edge as a row of the flat table: level l's row l (P + 1), plus the edge where the
        # block is selected (every edge of an unselected level at its zero row, adding nothing).
        first_row = (levels - first) * (num_pos + 1)
        found = torch.addcmul(first_row, found.view(num_group, -1, num_pos), selected)
        edge = torch.addcmul(first_row, edge, selected)
        del selected, first_row
        # differences of edges count the positives between them (the rows' offsets cancel)
        group_counts = (found.sum(0), edge.sum((0, 1)))
        edges = torch.cat([edge, found] if suffix else [found, edge], 1).unbind(1)
        del edge, found
        if bags is None or num_group != group:
            bags = torch.arange(0, num_group * num_pos, num_group, device=device)
        # one bag per query: the group's levels
        table = table.view(-1, num_cols)
        group_sums = torch.stack(
            [
                torch.nn.functional.embedding_bag(e.t().reshape(-1), table, bags, mode="sum")
                for e in edges
            ]
        )
        del edges, table
        if sums is None:
            (below, whole), sums = group_counts, group_sums
        else:
            below += group_counts[0]
            whole += group_counts[1]
            sums += group_sums
    return below, whole, sums


def _pairs_levels(p, y, delta, budget: int) -> PairSums:
    """Positive-positive sums in O(P log^2 P) with the quality tree's levels side by side
    (:func:`_selected_sums`; same inputs as the dense pass): few operations, whatever P.

    ``budget``: bytes that one group of the tree's levels may take.
    """
    q_of, tie_start, tie_end = _quality_positions_by_search(y)
    bounds = windows(p, delta)
    R, C = window_sums(p, _ones_and_costs(y), delta, bounds).unbind(1)
    # D and E: the lower-quality positives (quality positions before i's tie group), their
    # counts and their sums of s, 1 - y and (1 - y) s between the edges below lo_i and hi_i
    cost = 1.0 - y.to(torch.float64)
    values = torch.stack([p, cost, cost * p], 1)
    del cost
    below, end, sums = _selected_sums(q_of, tie_start, list(bounds), values, budget, suffix=False)
    del values, tie_start
    in_window, above = below[1] - below[0], end - below[1]
    window, over = sums.diff(dim=0)
    del below, end, sums
    if delta > 0:  # H = 1 above the window, (s_k - s_i + delta) / (2 delta) inside
        base = p - delta
        D = torch.addcmul(window[:, 0], in_window, base, value=-1.0)
        E = torch.addcmul(window[:, 2], window[:, 1], base, value=-1.0)
        # an empty window adds exactly 0, a non-empty one at least 0
        DE = torch.stack([D, E]).mul_(0.5 / delta).clamp_min_(0.0).mul_(in_window > 0)
        D, E = DE.add_(torch.stack([above, over[:, 1]])).unbind(0)
    else:  # H = 1 from s_k = s_i on: the window (ties) and above
        D, E = (in_window + above).to(torch.float64), window[:, 1] + over[:, 1]
    del in_window, above, window, over
    lS = _sorting_error(R, C, D, E)
    share = _sorting_share(lS, D)
    # the inflow from the higher-quality positives: share_k H(s_i - s_k), 1 below the window
    values = torch.stack([share, share * p], 1)
    below, _, sums = _selected_sums(q_of, tie_end, list(bounds), values, budget, suffix=True)
    del values
    in_window = below[1] - below[0]
    (below, window) = sums.diff(dim=0)
    if delta > 0:
        inflow = torch.addcmul(window[:, 1], window[:, 0], p + delta, value=-1.0)
        inflow = inflow.mul_(-0.5 / delta).clamp_min_(0.0).mul_(in_window > 0).add_(below[:, 0])
    else:
        inflow = below[:, 0] + window[:, 0]
    # the sorting part of |P| g_i: the inflow, minus [D_i > eps] l_S(i) (as share_i D_i)
    return PairSums(R, lS.mean(), torch.addcmul(inflow, share, D, value=-1.0))


def pair_method(num_pos: int, device: torch.device) -> str:
    """The pass that ``method="auto"`` takes for ``num_pos`` positives on ``device``: the dense one
    below the crossover measured with ``benchmarks/bench_rank_sort.py --crossover``, the tree
    from there on."""
    crossover = _TREE_MIN_POS.get(device.type, _TREE_MIN_POS["cuda"])
    return "tree" if num_pos >= crossover else "dense"


def positive_pairs(
    p: torch.Tensor,
    y: torch.Tensor,
    delta: float,
    method: str = "auto",
    budget: Optional[int] = None,
    *,
    input_entries: Optional[int] = None,
) -> PairSums:
    """The positive-positive sums of RS Loss: ``R_i``, the mean sorting error and the sorting part
    of every positive's gradient.

    Args:
        p: (P,) float64 positives' logits, sorted ascending (centred, e.g.
            :attr:`~rs_detectron2.losses.ranking_core.RankingPool.p`).
        y: (P,) their targets (localisation qualities in (0, 1]) in the same order, any floating
            dtype (compared as is, summed in float64).
        delta: half-width of the smoothed step, >= 0.
        method: ``"auto"`` (:func:`pair_method`), ``"dense"`` or ``"tree"``; all give the same
            values up to rounding.
        budget: bytes that one chunk's temporaries may take (None: each pass's default, or
            the device's share of ``input_entries``).
        input_entries: the number of entries of the whole ranking pool: without a ``budget``,
            the chunks take :attr:`~rs_detectron2.losses.ranking_core.Blocks.pair_bytes` (the
            dense pass) or ``tree_bytes`` (the tree's leaf sums, or a group of its levels, at
            least ``tree_min_bytes``) bytes per entry.
    Returns:
        :class:`PairSums`.
    """
    if method not in PAIR_METHODS:
        raise ValueError(f"positive_pairs: method must be one of {PAIR_METHODS}, got {method!r}")
    if method == "auto":
        method = pair_method(p.numel(), p.device)
    blocks = blocks_for(p.device)
    if method == "tree":
        if budget is None and input_entries is not None:
            budget = int(blocks.tree_bytes * input_entries)
        if blocks.tree_all_levels:
            return _pairs_levels(p, y, delta, max(budget or 0, blocks.tree_min_bytes))
        return _pairs_tree(p, y, delta, budget)
    if budget is None and input_entries is not None:
        budget = int(blocks.pair_bytes * input_entries)
    return _pairs_dense(p, y, delta, budget)
