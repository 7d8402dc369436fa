"""The negatives' side of the exact ranking losses (RS, AP and aLRP Loss), without a loop over
positives.

Notation (Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019;
Oksuz et al., "A Ranking-based, Balanced Loss Function Unifying Classification and Localisation in
Object Detection", NeurIPS 2020; Oksuz et al., "Rank & Sort Loss for Object Detection and Instance
Segmentation", ICCV 2021). ``s`` are the logits and ``y`` the targets of one ranking pool:
P = {y > 0} (positives), N = {y == 0} (negatives), ``y < 0`` ignored. ``H`` is the step function
smoothed linearly on [-delta, delta] (the hard step ``[x >= 0]`` when delta = 0). Every loss of the
family needs, for each positive i and negative j:

    NFP(i) = sum_{j in N} H(s_j - s_i)          (soft count of the negatives ranked above i)
    |P| g_j = sum_{i in P} w_i H(s_j - s_i)     (the identity-update gradient of negative j,
                                                 with per-positive weights w set by the loss)

and sums over the positives, ``sum_k v_k H(s_k - s_i)`` (:func:`window_sums`).

How. Only the relevant negatives, ``s_j >= min_i s_i - delta``, have H > 0 for some positive, so
dropping the others is exact. The positives are sorted by logit once; their window edges cut the
line into 2P + 1 gaps, counted from the top (in the coordinate ``x = centre - delta - s``, whose
sorted keys are ``-p_i - 2 delta`` and ``-p_i``): a negative in gap t has H = 1 for the positives
``[0, lo_t)``, H linear in ``s_j`` for ``[lo_t, hi_t)`` and H = 0 from ``hi_t`` on. Each relevant
negative is located once with a binary search (:func:`count_negatives`); per gap, its count and
logit sum are accumulated together (one scatter-add per chunk), and their prefix sums from the top,
read at each positive's two keys, give NFP. Its gradient is an affine function of ``s_j`` per gap
(:func:`gap_coefficients`), built from prefix sums of ``w`` and ``w s`` and written in a second
walk (:func:`negative_gradient`); the entries that are not relevant negatives go to the bottom
gap, whose coefficients are exactly 0. That is O((N + P) log P) time; with delta = 0 the keys are
``-p_i`` themselves.

Numerics. All sums are in float64 around a centred logit (the median positive), so the result
does not depend on where the logits sit; NFP's sums run from the top down, so the rounding of a
small NFP(i) (a large AP or aLRP weight 1 / NFP(i)) grows with the negatives above i only; counts
are integers, so ``NFP(i) > 0`` can be decided exactly. There is exactly one device-to-host
synchronisation per call (the counts and the input checks, read together) and no boolean-mask
indexing (it would synchronise on CUDA). When most entries are candidates the flat input is walked
in contiguous chunks, otherwise the candidates are compacted once; the chunks' temporaries stay far
below the input's size, and every chunk is a handful of operations (kernel launches on a GPU, where
at detection sizes their number, not the bytes, sets the time).
"""

import dataclasses
import math
from typing import Iterator, NamedTuple, Optional, Tuple, Union

import torch

__all__ = [
    "BLOCKS",
    "Blocks",
    "GapCoefficients",
    "NegativeSums",
    "RankingPool",
    "Walk",
    "blocks_for",
    "count_negatives",
    "exclusive_cumsum",
    "gap_coefficients",
    "negative_gradient",
    "rank_pool",
    "step",
    "window_sums",
    "windows",
]


@dataclasses.dataclass(frozen=True)
class Blocks:
    """How one loss call cuts its work into chunks on one kind of device.

    Every chunk is a few kernel launches whatever its size, and at the sizes of detection a GPU's
    time goes to launches: there, chunks are as large as the memory bound allows (the call's peak
    stays within twice the bytes of its logits and targets). A CPU's time goes to memory traffic:
    there, chunks stay small enough for its caches (sizes measured with
    ``benchmarks/bench_rank_sort.py``). Sizes are in entries unless named otherwise.
    """

    neg_parts: int  # the negatives' walk takes about 1/neg_parts of the entries per chunk ...
    neg_min: int  # ... but at least neg_min ...
    neg_max: int  # ... and at most neg_max
    min_chunk: int  # entries per chunk of the positives' minimum logit
    pair_bytes: float  # the dense positive-pair pass: bytes per input entry one chunk may take ...
    pair_max_elements: int  # ... and at most this many matrix elements per chunk
    pair_max_chunks: int  # ... in at most this many chunks (a loop over chunks, not positives)
    # the quality tree: level by level (the least work) or with its levels side by side (the
    # fewest operations, in groups of levels)
    tree_all_levels: bool
    tree_bytes: float  # bytes per input entry that one chunk (or group of levels) may take ...
    tree_min_bytes: int  # ... but at least this many (a group of levels)
    tree_min_chunk: int  # the level-by-level tree's queries per chunk: at least this ...
    tree_chunks: int  # ... else about 1/tree_chunks of the positives

    def negative_block(self, num: int) -> int:
        """Entries per chunk of the walk over ``num`` entries."""
        return min(self.neg_max, max(self.neg_min, -(-num // self.neg_parts)))


_UNBOUNDED = 1 << 62
BLOCKS = {
    # Small chunks: temporaries that stay in cache and are not page-faulted in again.
    "cpu": Blocks(
        neg_parts=64,
        neg_min=4096,
        neg_max=1 << 16,
        min_chunk=1 << 18,
        pair_bytes=4.0,
        pair_max_elements=1 << 19,
        pair_max_chunks=64,
        tree_all_levels=False,
        tree_bytes=1.0,
        tree_min_bytes=0,
        tree_min_chunk=2048,
        tree_chunks=16,
    ),
    # Few launches: the walk in about four chunks (usually one when few entries are candidates),
    # the minimum in one pass, the dense pass in chunks of up to 1.25 x the input's bytes, the
    # quality tree with its levels side by side in groups of 3/4 x the input's bytes (at least
    # 8 MiB: two groups at P = 2e4).
    "cuda": Blocks(
        neg_parts=4,
        neg_min=1 << 16,
        neg_max=_UNBOUNDED,
        min_chunk=_UNBOUNDED,
        pair_bytes=10.0,
        pair_max_elements=_UNBOUNDED,
        pair_max_chunks=64,
        tree_all_levels=True,
        tree_bytes=6.0,
        tree_min_bytes=1 << 23,
        tree_min_chunk=1 << 16,
        tree_chunks=16,
    ),
}


def blocks_for(device: torch.device) -> Blocks:
    """The :class:`Blocks` of ``device``'s type: :data:`BLOCKS` ``["cpu"]`` on the CPU, the GPU
    sizes (``"cuda"``) on every accelerator."""
    return BLOCKS.get(device.type, BLOCKS["cuda"])


def step(x: torch.Tensor, delta: float) -> torch.Tensor:
    """The smoothed step H(x), elementwise (a new tensor). ``delta == 0`` gives [x >= 0]."""
    if delta > 0:
        return (x / (2 * delta) + 0.5).clamp_(0.0, 1.0)
    return (x >= 0).to(x.dtype)


def exclusive_cumsum(x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """(n, ...) -> (n + 1, ...): the sums of the first 0, 1, ..., n rows (in ``dtype``, if
    given)."""
    # a zero row padded in front of the sums: two operations (kernel launches on a GPU)
    return torch.nn.functional.pad(torch.cumsum(x, 0, dtype=dtype), (0, 0) * (x.dim() - 1) + (1, 0))


# ----------------------------------------------------------------------------------------------
# The pool: checks and counts (the one host synchronisation), the sorted positives, the walk


@dataclasses.dataclass
class Walk:
    """The candidates for relevant negatives, visited in chunks: the flat input itself, or a
    compacted index list of the entries at or above the threshold (positives included)."""

    flat: bool  # True: every entry in contiguous chunks; False: the entries of ``idx``
    total: int  # number of walked entries
    idx: Optional[torch.Tensor]  # (total,) int32 or int64 candidate indices; None for the flat walk
    block: int  # entries per chunk
    # (total,) bool per walked entry: a relevant negative (target 0; for the flat walk, also
    # s >= threshold); released (set to None) by the first walk (:func:`count_negatives`), which
    # records it in the gaps
    relevant: Optional[torch.Tensor]

    def chunks(self) -> Iterator[Tuple[Union[None, slice, torch.Tensor], Optional[slice]]]:
        """``(entries, where)`` per chunk: the entries' indices in the input (a slice or an index
        tensor) and their positions in the walk (a slice); a walk in one chunk yields ``where =
        None`` (and ``entries = None`` for the flat walk): the whole, with no slicing operation."""
        if self.total <= self.block:
            yield (None if self.flat else self.idx), None
            return
        for start in range(0, self.total, self.block):
            where = slice(start, start + self.block)
            yield (where if self.flat else self.idx[where]), where

    def take(self, x: torch.Tensor, entries: Union[None, slice, torch.Tensor]) -> torch.Tensor:
        """``x[entries]`` of a chunk as a new float64 tensor (never a view of ``x``)."""
        if not self.flat:
            return x.index_select(0, entries).to(torch.float64)
        return (x if entries is None else x[entries]).to(torch.float64, copy=True)


def _part(x: torch.Tensor, where: Optional[slice]) -> torch.Tensor:
    """``x[where]``, or ``x`` itself for ``where = None`` (a walk in one chunk)."""
    return x if where is None else x[where]


class RankingPool(NamedTuple):
    """The positives of one flat ranking pool sorted by logit, and how to walk its candidates.

    Per-positive tensors are in ascending logit order (ties: by flat index).
    """

    idx: torch.Tensor  # (P,) int32 or int64: flat index of each positive
    p: torch.Tensor  # (P,) float64: sorted logits minus ``centre``
    centre: torch.Tensor  # 0-dim float64: the median positive logit
    # (P,) int64: each positive's position in the flat positive order (``y.flatten() > 0``), or
    # None when not asked for
    order: Optional[torch.Tensor]
    # 0-dim float64, centre - delta: a walked entry's coordinate is x_j = origin - s_j, so that
    # x_j = -(s_j - s_i + delta) - p_i: H(s_j - s_i) is 1 for x_j < -p_i - 2 delta, 0 from -p_i on
    origin: torch.Tensor
    walk: Walk
    delta: float


def _masked_min(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0-dim minimum of ``s`` where ``mask`` (+inf where it selects nothing), in chunks of
    :attr:`Blocks.min_chunk` entries: on a CPU an input-sized temporary would cost more in page
    faults than the minimum itself."""
    block = blocks_for(s.device).min_chunk
    if s.numel() <= block:
        return torch.where(mask, s, float("inf")).amin()
    chunks = zip(s.split(block), mask.split(block), strict=True)
    return torch.stack([torch.where(m, c, float("inf")).amin() for c, m in chunks]).amin()


def _check_loc_count(loc: Optional[torch.Tensor], num_pos: int, name: str) -> None:
    if loc is not None and loc.numel() != num_pos:
        raise ValueError(
            f"{name}: loc_errors has {loc.numel()} entries but there are {num_pos} positives "
            "(targets > 0)"
        )


# The candidates' threshold lies below min_i s_i - delta by this share of |min_i s_i| + delta:
# far above the rounding of its few float32 operations, so that no negative with H > 0 is lost
# (the extra ones fall below every window and add exactly 0).
_THRESHOLD_MARGIN = 2.0**-20


def _check_and_count(s, y, delta: float, name: str, loc: Optional[torch.Tensor]):
    """Positive mask, candidate mask (the entries at or above the threshold) and their counts,
    read back to the host with the validity checks (one synchronisation)."""
    pos_mask = y > 0
    low = _masked_min(s, pos_mask)
    threshold = torch.add(
        low - delta * (1 + _THRESHOLD_MARGIN), low.abs(), alpha=-_THRESHOLD_MARGIN
    )
    cand_mask = s >= threshold  # every positive is one: one compaction finds them too
    s_min, s_max = torch.aminmax(s)  # NaN propagates, so both are finite iff every logit is
    # float64 holds the counts exactly (float32 would round counts above 2^24): the first entry
    # is float64, so stack promotes the others to it
    checks = [
        torch.count_nonzero(pos_mask).to(torch.float64),
        torch.count_nonzero(cand_mask),
        s_min,
        s_max,
        y.max(),
    ]
    if loc is not None:
        checks.append(torch.isfinite(loc).all())
    num_pos, num_cand, s_min, s_max, y_max, *loc_ok = torch.stack(checks).tolist()  # the sync
    if not (math.isfinite(s_min) and math.isfinite(s_max)):
        bad = int((~torch.isfinite(s)).sum())
        raise FloatingPointError(f"{name}: {bad} of {s.numel()} logits are not finite (NaN or inf)")
    if not y_max <= 1:
        bad = int((torch.isnan(y) | (y > 1)).sum())
        raise ValueError(
            f"{name}: {bad} targets are NaN or above 1; targets must be < 0 (ignored), "
            "0 (negative) or in (0, 1] (positive)"
        )
    _check_loc_count(loc, int(num_pos), name)
    if loc is not None and not loc_ok[0]:
        raise FloatingPointError(f"{name}: some loc_errors are not finite (NaN or inf)")
    return pos_mask, cand_mask, int(num_pos), int(num_cand)


def rank_pool(
    s: torch.Tensor,
    y: torch.Tensor,
    delta: float,
    name: str,
    *,
    loc: Optional[torch.Tensor] = None,
    keep_order: bool = False,
) -> Optional[RankingPool]:
    """Checks a flat ranking pool and sorts its positives (the call's one host synchronisation).

    Args:
        s: (n,) logits, float32 or float64 (never modified).
        y: (n,) targets: ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive.
        delta: half-width of the smoothed step, >= 0.
        name: the loss's name, for error messages.
        loc: optional (P,) per-positive values to check: one per positive, all finite (aLRP's
            localisation errors).
        keep_order: also return :attr:`RankingPool.order`.
    Returns:
        the :class:`RankingPool`, or None when there is no positive (or no entry).
    Raises:
        FloatingPointError: on non-finite logits or ``loc``.
        ValueError: on targets that are NaN or above 1, or ``loc`` of the wrong length.
    """
    if s.numel() == 0:
        _check_loc_count(loc, 0, name)
        return None
    pos_mask, cand_mask, num_pos, num_cand = _check_and_count(s, y, delta, name, loc)
    if num_pos == 0:
        return None
    # When most entries are candidates, walking the flat input in contiguous chunks (no index list,
    # no gathers) is cheaper; otherwise the candidates are compacted once and walked by index.
    block = blocks_for(s.device).negative_block(s.numel())
    if 4 * num_cand > s.numel():
        walk = Walk(True, s.numel(), None, block, cand_mask.logical_and_(y == 0))
        pos_idx = torch.nonzero_static(pos_mask, size=num_pos).squeeze(1)
    else:
        # int32 indices where they fit: half the memory of int64, and gathers take either.
        cand_idx = torch.nonzero_static(cand_mask, size=num_cand).squeeze(1)
        if s.numel() < 2**31:
            cand_idx = cand_idx.to(torch.int32)
        cand_y = y.index_select(0, cand_idx)
        in_cand = torch.nonzero_static(cand_y > 0, size=num_pos).squeeze(1)
        pos_idx = cand_idx.index_select(0, in_cand)
        walk = Walk(False, num_cand, cand_idx, block, cand_y == 0)
        del cand_y, in_cand
    del cand_mask, pos_mask
    logits, order = s.index_select(0, pos_idx).to(torch.float64).sort(stable=True)
    pos_idx = pos_idx.index_select(0, order)
    centre = logits[num_pos // 2]
    p = logits - centre
    return RankingPool(
        pos_idx, p, centre, order if keep_order else None, centre - delta, walk, delta
    )


# ----------------------------------------------------------------------------------------------
# Relevant negatives -> NFP(i) of every positive


@dataclasses.dataclass
class NegativeSums:
    """What the walk over the negatives found; (P,) tensors in the pool's logit order.

    It serves one gradient (:func:`gap_coefficients`, then :func:`negative_gradient`), which
    releases its tensors (sets them to None) as soon as it can, so that they do not live next to
    the gradient.
    """

    nfp: Optional[torch.Tensor]  # (P,) float64: NFP(i)
    # (P,) float64 integers: the exact count of negatives with H(s_j - s_i) > 0
    num_fp: Optional[torch.Tensor]
    # (walk.total,) int16 or int32: the gap of every walked entry (the bottom gap, which adds
    # nothing, for the entries that are not relevant negatives)
    gap_of: Optional[torch.Tensor]
    # (G, 2) int32 per gap: the positives [0, lo) have H = 1, [lo, hi) H linear, [hi, P) H = 0
    bounds: Optional[torch.Tensor]


def _gap_edges(p: torch.Tensor, delta: float):
    """The keys that cut a walked entry's coordinate ``x = origin - s`` (see
    :class:`RankingPool`) into gaps, for the sorted positives ``p`` (P,).

    Returns ``(keys, side, at, bounds)``: ``keys`` (E,) float64 ascending, and the gap of ``x`` is
    ``searchsorted(keys, x, side=side)``, 0 above every window and E (the bottom gap) below them;
    ``at`` (int64) the position in ``keys`` of each positive's upper key (P,), then (delta > 0)
    its lower key (P,): H(s_j - s_i) is 1 for the gaps ``<= at[i]`` and > 0 for those ``<=
    at[P + i]``; ``bounds`` (E + 1, 2) int32, per gap ``(lo, hi)`` as in :class:`NegativeSums`.
    """
    num_pos = p.numel()
    if delta == 0:  # H = [x <= -p_i]: one key per positive; -p descends, so it is reversed
        keys = p.neg().flip(0)
        at = torch.arange(num_pos - 1, -1, -1, device=p.device)
        lo = torch.arange(num_pos, -1, -1, dtype=torch.int32, device=p.device)
        return keys, "left", at, torch.stack([lo, lo], 1)
    neg_p = p.neg()
    keys, order = torch.cat([neg_p - 2 * delta, neg_p]).sort(stable=True)
    at = order.argsort()
    # Gap t follows the first t keys: H = 1 for the positives whose upper key is not among them,
    # [0, P - #upper keys before t), and H > 0 for those whose lower key is not, likewise.
    kinds = torch.stack([order < num_pos, order >= num_pos], 1)
    bounds = exclusive_cumsum(kinds, dtype=torch.int32)
    return keys, "right", at, torch.sub(num_pos, bounds)


def count_negatives(s: torch.Tensor, pool: RankingPool) -> NegativeSums:
    """``NFP(i)`` of every positive and the gap of every walked entry.

    Args:
        s: the flat (n,) logits that ``pool`` was made from (its targets are in the walk's mask).
        pool: from :func:`rank_pool`; its walk's mask of relevant negatives is released.
    Returns:
        :class:`NegativeSums`; its gaps feed :func:`negative_gradient`.
    """
    p, delta, walk = pool.p, pool.delta, pool.walk
    relevant, walk.relevant = walk.relevant, None
    keys, side, at, bounds = _gap_edges(p, delta)
    bottom = keys.numel()  # the gap below every window
    # int16 gaps where they fit (the flat walk stores one per input entry)
    gap_dtype = torch.int16 if walk.flat and bottom <= torch.iinfo(torch.int16).max else torch.int32
    gap_of = torch.empty(walk.total, dtype=gap_dtype, device=s.device)
    # Per gap: the number of relevant negatives (exact: float64 sums of ones) and the sum of x,
    # as two rows (a scatter-add into a 1-d tensor is the fast one on a CPU)
    sums = torch.zeros(2, bottom + 1, dtype=torch.float64, device=s.device)
    gap_count, gap_sum = sums.unbind(0)
    for idx, where in walk.chunks():
        x = walk.take(s, idx)
        torch.sub(pool.origin, x, out=x)  # in place: the chunk's largest temporary
        gap = torch.searchsorted(keys, x, side=side, out_int32=True)
        gap = torch.where(_part(relevant, where), gap, bottom)
        _part(gap_of, where).copy_(gap)
        gap_count.index_add_(0, gap, torch.ones_like(x))
        gap_sum.index_add_(0, gap, x)
        del x, gap  # before the next chunk's
    del keys, relevant
    # From the top down: row t sums the gaps 0..t, so that the rounding of positive i's sums grows
    # with the negatives above its window only (a small NFP_i, a large AP / aLRP weight 1 / NFP_i,
    # stays exact). The bottom gap (irrelevant entries) is last and never read.
    del gap_count, gap_sum
    sums = sums.cumsum_(1).index_select(1, at)  # rows: count, sum
    if delta == 0:
        num_fp = sums[0]
        return NegativeSums(num_fp, num_fp, gap_of, bounds)
    above, upto = sums.view(2, 2, -1).unbind(1)  # gaps with H = 1; gaps with H > 0
    count, total = upto - above  # the window's count and sum of x
    # sum over the window of H = (s_j - s_i + delta) / (2 delta) = -(x_j + p_i) / (2 delta)
    in_window = torch.addcmul(total, count, p).mul_(-0.5 / delta).clamp_min_(0.0)
    # An empty window must add exactly 0, not the rounding noise of the running sums.
    nfp = torch.where(count > 0, in_window, 0.0).add_(above[0])
    return NegativeSums(nfp, upto[0], gap_of, bounds)


# ----------------------------------------------------------------------------------------------
# The negatives' gradient


class GapCoefficients(NamedTuple):
    """Per gap ``t`` (see :class:`NegativeSums`), the gradient of a walked entry in it is
    ``a[t] + b[t] * x`` with its coordinate ``x = origin - s`` (:class:`RankingPool`)."""

    ba: torch.Tensor  # (G, 2) float64: b and a side by side (b = 0 when delta = 0)


def gap_coefficients(
    pool: RankingPool, negatives: NegativeSums, weights: torch.Tensor
) -> GapCoefficients:
    """The negatives' identity-update gradient ``g_j = (1 / P) sum_i weights_i H(s_j - s_i)`` as
    an affine function of ``x_j = origin - s_j`` per gap (from prefix sums of the weights).

    With prefix sums W of w = weights / P and S of w p over the sorted positives, the positives
    [0, lo) give W[lo] and the window [lo, hi) gives sum w_i (s_j - s_i + delta) / (2 delta) =
    (S[lo] - S[hi] - x_j (W[hi] - W[lo])) / (2 delta). The bottom gap (lo = hi = 0) has
    a = b = 0 exactly.

    Args:
        pool: from :func:`rank_pool`.
        negatives: from :func:`count_negatives` on the same pool; all its tensors but the gap
            of every walked entry are released.
        weights: (P,) float64 per-positive weights, in the pool's logit order.
    Returns:
        :class:`GapCoefficients` for :func:`negative_gradient`.
    """
    if negatives.bounds is None:
        raise RuntimeError("gap_coefficients: these NegativeSums have served a gradient already")
    bounds, delta = negatives.bounds, pool.delta
    negatives.nfp = negatives.num_fp = negatives.bounds = None
    num_pos = weights.numel()
    if delta == 0:
        a = exclusive_cumsum(weights).index_select(0, bounds[:, 0]).div_(num_pos)
        return GapCoefficients(torch.stack([torch.zeros_like(a), a], 1))
    # (W, S) without the 1 / P, which the result takes at the end
    prefix = exclusive_cumsum(torch.stack([weights, weights * pool.p], 1))
    lo, hi = bounds.unbind(1)
    del bounds
    at_hi = prefix.index_select(0, hi)
    ba = prefix.index_select(0, lo).sub_(at_hi)  # (W[lo] - W[hi], S[lo] - S[hi]), then (b, a)
    del prefix
    scale = 0.5 / delta
    dw, ds = ba.unbind(1)
    ds.mul_(scale).add_(dw).add_(at_hi[:, 0])  # a = W[hi] + (W[lo] - W[hi]) + scale (S[lo] - S[hi])
    dw.mul_(scale)
    return GapCoefficients(ba.div_(num_pos))


def negative_gradient(
    s: torch.Tensor,
    pool: RankingPool,
    negatives: NegativeSums,
    coefficients: GapCoefficients,
) -> torch.Tensor:
    """The identity-update gradient of every entry of the pool but its positives.

    Args:
        s: the flat (n,) logits of ``pool``.
        pool: from :func:`rank_pool`.
        negatives: from :func:`count_negatives` on the same pool; its gaps are released.
        coefficients: from :func:`gap_coefficients` (whose weights the caller may drop first).
    Returns:
        (n,) gradient in the dtype of ``s``: ``g_j`` on the relevant negatives, 0 on every other
        entry (the caller writes the positives' own gradients).
    """
    if negatives.gap_of is None:
        raise RuntimeError("negative_gradient: these NegativeSums have served a gradient already")
    gap_of = negatives.gap_of
    negatives.gap_of = None
    walk = pool.walk
    # The flat walk writes every entry (0 in the bottom gap); the compacted one the candidates.
    grad = torch.empty_like(s) if walk.flat else torch.zeros_like(s)
    for idx, where in walk.chunks():
        x = walk.take(s, idx)
        torch.sub(pool.origin, x, out=x)
        gap = _part(gap_of, where)
        if gap.dtype != torch.int32:  # int16 (the flat walk): gathers take int32 or int64
            gap = gap.to(torch.int32)
        b, a = coefficients.ba.index_select(0, gap).unbind(1)
        del gap
        if walk.flat:
            torch.addcmul(a, b, x, out=_part(grad, where))
        else:
            grad[idx] = torch.addcmul(a, b, x).to(grad.dtype)
        del a, b, x  # before the next chunk's
    return grad


# ----------------------------------------------------------------------------------------------
# Sums over the positives


def windows(p: torch.Tensor, delta: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Logit-rank windows (int32, (P,) each) of the sorted positives ``p``: with delta > 0,
    ``lo_i = #{k: s_k <= s_i - delta}`` and ``hi_i = #{k: s_k <= s_i + delta}``, so ``H(s_k - s_i)``
    is 0 for ranks below lo, linear on [lo, hi) and 1 from hi on; with delta = 0, the first rank
    with ``s_k >= s_i`` and the first with ``s_k > s_i``."""
    if delta > 0:
        lo = torch.searchsorted(p, p - delta, side="right", out_int32=True)
        hi = torch.searchsorted(p, p + delta, side="right", out_int32=True)
    else:
        lo = torch.searchsorted(p, p, side="left", out_int32=True)
        hi = torch.searchsorted(p, p, side="right", out_int32=True)
    return lo, hi


def window_sums(
    p: torch.Tensor,
    weights: torch.Tensor,
    delta: float,
    bounds: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """``out_i = sum_k weights_k H(p_k - p_i)`` over every k, the self term H(0) included (1/2, or
    1 when delta = 0), from prefix sums.

    Args:
        p: (P,) sorted float64 logits (e.g. :attr:`RankingPool.p`).
        weights: (P,) float64 in the same order, or (P, K): K columns summed side by side.
        delta: half-width of the smoothed step, >= 0.
        bounds: ``windows(p, delta)`` if already computed.
    Returns:
        (P,) float64, or (P, K) for (P, K) weights.
    """
    lo, hi = windows(p, delta) if bounds is None else bounds
    cum = exclusive_cumsum(weights)
    if delta == 0:
        return cum[-1] - cum.index_select(0, lo)
    if weights.dim() == 2:  # columns side by side
        p = p[:, None]
    # In place where possible: the tree pass calls this with many (P,) arrays alive.
    upper = cum.index_select(0, hi)
    out = cum[-1] - upper  # H = 1
    in_window = upper.sub_(cum.index_select(0, lo)).mul_(p - delta)
    cum = exclusive_cumsum(weights * p)
    win_wp = cum.index_select(0, hi).sub_(cum.index_select(0, lo))
    del cum
    return out.add_(win_wp.sub_(in_window).mul_(0.5 / delta))
