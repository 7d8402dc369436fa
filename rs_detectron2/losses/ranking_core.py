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
dropping the others is exact. The positives are sorted by logit once; their window edges
``s_i +- delta`` cut the line into 2P + 1 gaps, and a negative in gap t has H = 1 for the positives
``[0, lo_t)``, H linear in ``s_j`` for ``[lo_t, hi_t)`` and H = 0 from ``hi_t`` on. Each relevant
negative is located once with a binary search (:func:`count_negatives`); per gap, its count and
logit sum are accumulated and spread to the positives with difference arrays (NFP), and its
gradient is an affine function of ``s_j`` per gap (:func:`gap_coefficients`), built from prefix
sums of ``w`` and ``w s`` and written in a second walk (:func:`negative_gradient`). That is
O((N + P) log P) time; with delta = 0 the edges are the logits themselves.

Numerics. All sums are in float64 around a centred logit (the median positive), so the result
does not depend on where the logits sit; NFP's sums run from the top down, so the rounding of a
small NFP(i) (a large AP or aLRP weight 1 / NFP(i)) grows with the negatives above i only; counts
are integers, so ``NFP(i) > 0`` can be decided exactly. There is exactly one device-to-host
synchronisation per call (the counts and the input checks, read together) and no boolean-mask
indexing (it would synchronise on CUDA). When most entries are candidates the flat input is walked
in contiguous chunks, otherwise the candidates are compacted once; the chunks' temporaries stay far
below the input's size.
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
    tree_bytes: float  # the quality tree's leaf sums: bytes per input entry one chunk may take
    tree_min_chunk: int  # the quality tree's queries per chunk: at least this ...
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
        tree_bytes=1.0,
        tree_min_chunk=2048,
        tree_chunks=16,
    ),
    # Few launches: the walk in about four chunks (usually one when few entries are candidates),
    # the minimum in one pass, the dense pass in chunks of up to 1.25 x the input's bytes.
    "cuda": Blocks(
        neg_parts=4,
        neg_min=1 << 16,
        neg_max=_UNBOUNDED,
        min_chunk=_UNBOUNDED,
        pair_bytes=10.0,
        pair_max_elements=_UNBOUNDED,
        pair_max_chunks=64,
        tree_bytes=1.0,
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


class Walk(NamedTuple):
    """The candidate entries (``s >= threshold``), visited in chunks: the flat input itself, or a
    compacted index list."""

    flat: bool  # True: every entry in contiguous chunks, masked; False: the entries of ``idx``
    total: int  # number of walked entries
    idx: Optional[torch.Tensor]  # (total,) candidate indices, or None for the flat walk
    block: int  # entries per chunk

    def chunks(self) -> Iterator[Tuple[Union[slice, torch.Tensor], slice]]:
        """``(entries, where)`` per chunk: the entries' indices in the input (a slice or an index
        tensor) and their positions in the walk (a slice)."""
        for start in range(0, self.total, self.block):
            where = slice(start, start + self.block)
            yield (where if self.flat else self.idx[where]), where

    def take(self, x: torch.Tensor, entries: Union[slice, torch.Tensor]) -> torch.Tensor:
        """``x[entries]`` of a chunk: a view for the flat walk, a gather otherwise."""
        return x[entries] if self.flat else x.index_select(0, entries)


class RankingPool(NamedTuple):
    """The positives of one flat ranking pool sorted by logit, and how to walk its candidates.

    Per-positive tensors are in ascending logit order (ties: by flat index).
    """

    idx: torch.Tensor  # (P,) int32 (int64 for 2^31 entries or more): flat index of each positive
    p: torch.Tensor  # (P,) float64: sorted logits minus ``centre``
    centre: torch.Tensor  # 0-dim float64: the median positive logit
    # (P,) int64: each positive's position in the flat positive order (``y.flatten() > 0``), or
    # None when not asked for
    order: Optional[torch.Tensor]
    threshold: torch.Tensor  # 0-dim, dtype of s: the candidates' lower bound, min_i s_i - delta
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


def _check_and_count(s, y, delta: float, name: str, loc: Optional[torch.Tensor]):
    """Positive and candidate masks, the threshold and the counts, read back to the host with the
    validity checks (one synchronisation). Every positive is a candidate (its logit is at least the
    threshold), so one compaction of the candidates also finds the positives."""
    pos_mask = y > 0
    threshold = (_masked_min(s, pos_mask).to(torch.float64) - delta).to(s.dtype)
    # Rounded down, so that no negative with H > 0 is lost to rounding (extra ones add exactly 0).
    threshold = torch.nextafter(threshold, torch.full_like(threshold, -float("inf")))
    cand_mask = s >= threshold
    s_min, s_max = torch.aminmax(s)  # NaN propagates, so both are finite iff every logit is
    # float64 holds the counts exactly (float32 would round counts above 2^24)
    checks = [
        torch.count_nonzero(pos_mask).to(torch.float64),
        torch.count_nonzero(cand_mask).to(torch.float64),
        s_min.to(torch.float64),
        s_max.to(torch.float64),
        y.max().to(torch.float64),
    ]
    if loc is not None:
        checks.append(torch.isfinite(loc).all().to(torch.float64))
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
    return pos_mask, cand_mask, threshold, int(num_pos), int(num_cand)


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
    pos_mask, cand_mask, threshold, num_pos, num_cand = _check_and_count(s, y, delta, name, loc)
    if num_pos == 0:
        return None
    # When most entries are candidates, walking the flat input in contiguous chunks (no index list,
    # no gathers) is cheaper; otherwise the candidates are compacted once and walked by index.
    flat = 4 * num_cand > s.numel()
    blocks = blocks_for(s.device)
    block = blocks.negative_block(s.numel())
    # int32 indices where they fit: half the memory of int64, and gathers take either.
    index_dtype = torch.int32 if s.numel() < 2**31 else torch.int64
    if flat:
        pos_idx = torch.nonzero_static(pos_mask, size=num_pos).squeeze(1)
        walk = Walk(True, s.numel(), None, block)
    else:
        cand_idx = torch.nonzero_static(cand_mask, size=num_cand).squeeze(1).to(index_dtype)
        in_cand = torch.nonzero_static(y.index_select(0, cand_idx) > 0, size=num_pos)
        pos_idx = cand_idx.index_select(0, in_cand.squeeze(1))
        walk = Walk(False, num_cand, cand_idx, block)
    del pos_mask, cand_mask
    p, order = s.index_select(0, pos_idx).to(torch.float64).sort(stable=True)
    pos_idx = pos_idx.index_select(0, order).to(index_dtype)
    if not keep_order:
        order = None
    centre = p[num_pos // 2].clone()
    return RankingPool(pos_idx, p.sub_(centre), centre, order, threshold, walk, delta)


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
    # (P,) integer: the exact count of negatives with H(s_j - s_i) > 0
    num_fp: Optional[torch.Tensor]
    gap_of: Optional[torch.Tensor]  # (walk.total,) int16 or int32: the gap of every walked entry
    lo: Optional[torch.Tensor]  # (2P + 1,) int32 per gap: H = 1 for the positives [0, lo)
    hi: Optional[torch.Tensor]  # (2P + 1,) int32 per gap: H linear for [lo, hi), 0 from hi on


def _window_edges(p: torch.Tensor, delta: float):
    """Where a negative can fall relative to the sorted positives ``p`` (P,).

    Returns ``edges`` (sorted, the points at which some H(s_j - s_i) changes its piece) and, for
    every gap ``t`` between consecutive edges, ``lo[t]`` and ``hi[t]`` (int32, (len(edges) + 1,)):
    see :class:`NegativeSums`. With delta > 0, a negative at ``v`` lies in gap ``#edges < v``: the
    window is ``(s_i - delta, s_i + delta]``, so every negative in it has H > 0 and counts of
    negatives with H > 0 are exact. With delta = 0, gap ``#edges <= v`` counts the positives with
    ``H = [s_j >= s_i] = 1``.
    """
    num_pos = p.numel()
    if delta == 0:
        gaps = torch.arange(num_pos + 1, dtype=torch.int32, device=p.device)
        return p, gaps, gaps
    edges, order = torch.cat([p + delta, p - delta]).sort(stable=True)
    is_upper = order < num_pos  # an edge p_i + delta: above it, positive i has H = 1
    del order
    lo = exclusive_cumsum(is_upper, dtype=torch.int32)
    hi = exclusive_cumsum(is_upper.logical_not_(), dtype=torch.int32)
    return edges, lo, hi


def _relevant(s_chunk, y_chunk, pool: RankingPool) -> torch.Tensor:
    """Bool mask of the relevant negatives of one chunk of the walk."""
    is_rel = y_chunk == 0
    if pool.walk.flat:
        is_rel &= s_chunk >= pool.threshold
    return is_rel


def count_negatives(s: torch.Tensor, y: torch.Tensor, pool: RankingPool) -> NegativeSums:
    """``NFP(i)`` of every positive and the gap of every walked entry.

    Args:
        s, y: the flat (n,) logits and targets that ``pool`` was made from.
        pool: from :func:`rank_pool`.
    Returns:
        :class:`NegativeSums`; its gaps feed :func:`negative_gradient`.
    """
    p, delta, walk = pool.p, pool.delta, pool.walk
    num_pos = p.numel()
    edges, lo, hi = _window_edges(p, delta)
    num_gaps = edges.numel() + 1
    side = "left" if delta > 0 else "right"
    # int16 gaps where they fit (the flat walk stores one per input entry)
    gap_dtype = torch.int16 if num_gaps <= torch.iinfo(torch.int16).max else torch.int32
    gap_of = torch.empty(walk.total, dtype=gap_dtype, device=s.device)
    # Counts are integers, kept exact (and small) in an integer dtype.
    count_dtype = torch.int32 if walk.total < 2**31 else torch.int64
    gap_cnt = torch.zeros(num_gaps, dtype=count_dtype, device=s.device)
    gap_sum = torch.zeros(num_gaps, dtype=torch.float64, device=s.device) if delta > 0 else None
    for idx, where in walk.chunks():
        s_chunk = walk.take(s, idx)
        is_rel = _relevant(s_chunk, walk.take(y, idx), pool)
        s_neg = s_chunk.to(torch.float64) - pool.centre  # a new tensor: updated in place below
        gap = torch.searchsorted(edges, s_neg, side=side, out_int32=True)
        gap_of[where] = gap
        gap_cnt.index_add_(0, gap, is_rel.to(count_dtype))
        if delta > 0:
            gap_sum.index_add_(0, gap, s_neg.add_(delta).masked_fill_(is_rel.logical_not_(), 0.0))
    del edges
    # Positives [0, lo) of gap t have H = 1: they count the gaps with lo > i.
    full = torch.zeros(num_pos + 1, dtype=count_dtype, device=s.device)
    full.index_add_(0, lo, gap_cnt).cumsum_(0)
    num_fp = full[-1] - full[:-1]
    nfp = num_fp.to(torch.float64)
    if delta > 0:
        # Positives [lo, hi) of gap t get sum_j (s_j + delta - s_i) / (2 delta): difference arrays.
        cnt = full.zero_().index_add_(0, lo, gap_cnt).index_add_(0, hi, gap_cnt, alpha=-1)
        cnt = cnt.cumsum_(0)[:-1]
        del gap_cnt
        num_fp += cnt
        win = torch.zeros(num_pos + 1, dtype=torch.float64, device=s.device)
        win.index_add_(0, hi, gap_sum).index_add_(0, lo, gap_sum, alpha=-1)
        del gap_sum
        # Summed from the top down, so that the rounding of positive i's sum grows with the
        # negatives above it only: a small NFP_i (a large AP / aLRP weight 1 / NFP_i) stays exact.
        win = win.flip(0).cumsum_(0).flip(0)[1:]
        in_window = win.sub_(cnt * p).mul_(0.5 / delta).clamp_min_(0.0)
        # An empty window must add exactly 0, not the rounding noise of the running sum.
        nfp += in_window.masked_fill_(cnt == 0, 0.0)
    return NegativeSums(nfp, num_fp, gap_of, lo, hi)


# ----------------------------------------------------------------------------------------------
# The negatives' gradient


def _negative_coefficients(w, p, lo, hi, delta: float):
    """``(alpha, beta)`` of :class:`GapCoefficients` for weights ``w`` and sorted positives ``p``.

    With prefix sums W of w and WS of w * s over the sorted positives, the positives [0, lo) give
    W[lo] and the window [lo, hi) gives ((s_j + delta) (W[hi] - W[lo]) - (WS[hi] - WS[lo])) / 2
    delta, so alpha = A[lo] + B[hi] with A = W / 2 + WS / (2 delta), B = W / 2 - WS / (2 delta).
    ``beta`` is None when delta = 0. Every temporary has the gaps' size, 2P + 1.
    """
    num_pos = p.numel()
    W = exclusive_cumsum(w)
    if delta == 0:
        return W.index_select(0, lo).div_(num_pos), None
    beta = W.index_select(0, hi).sub_(W.index_select(0, lo)).mul_(0.5 / (delta * num_pos))
    WS = exclusive_cumsum(w * p).mul_(0.5 / delta)
    W *= 0.5
    A = W + WS
    B = W.sub_(WS)
    del WS
    alpha = A.index_select(0, lo).add_(B.index_select(0, hi))
    return alpha.div_(num_pos), beta


class GapCoefficients(NamedTuple):
    """Per gap ``t`` between the window edges, the gradient of a negative in it is
    ``alpha[t] + beta[t] * (s_j - centre)``."""

    alpha: torch.Tensor  # (2P + 1,) float64 (P + 1 for delta = 0)
    beta: Optional[torch.Tensor]  # (2P + 1,) float64; None for delta = 0 (H is constant per gap)


def gap_coefficients(
    pool: RankingPool, negatives: NegativeSums, weights: torch.Tensor
) -> GapCoefficients:
    """The negatives' identity-update gradient ``g_j = (1 / P) sum_i weights_i H(s_j - s_i)`` as
    an affine function of ``s_j`` per gap (from prefix sums of the weights).

    Args:
        pool: from :func:`rank_pool`.
        negatives: from :func:`count_negatives` on the same pool; all its tensors but the gap
            of every walked entry are released.
        weights: (P,) float64 per-positive weights, in the pool's logit order.
    Returns:
        :class:`GapCoefficients` for :func:`negative_gradient`.
    """
    if negatives.lo is None:
        raise RuntimeError("gap_coefficients: these NegativeSums have served a gradient already")
    lo, hi = negatives.lo, negatives.hi
    negatives.nfp = negatives.num_fp = negatives.lo = negatives.hi = None
    return GapCoefficients(*_negative_coefficients(weights, pool.p, lo, hi, pool.delta))


def negative_gradient(
    s: torch.Tensor,
    y: torch.Tensor,
    pool: RankingPool,
    negatives: NegativeSums,
    coefficients: GapCoefficients,
) -> torch.Tensor:
    """The identity-update gradient of every entry of the pool but its positives.

    Args:
        s, y: the flat (n,) logits and targets of ``pool``.
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
    alpha, beta = coefficients
    # The flat walk writes every entry; the compacted one only the candidates.
    grad = torch.empty_like(s) if pool.walk.flat else torch.zeros_like(s)
    for idx, where in pool.walk.chunks():
        gap = gap_of[where].to(torch.int32)
        s_chunk = pool.walk.take(s, idx)
        is_rel = _relevant(s_chunk, pool.walk.take(y, idx), pool)
        g_neg = alpha.index_select(0, gap)
        if beta is not None:
            g_neg += beta.index_select(0, gap) * (s_chunk.to(torch.float64) - pool.centre)
        grad[idx] = g_neg.masked_fill_(is_rel.logical_not_(), 0.0).to(grad.dtype)
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
