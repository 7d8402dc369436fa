"""The exact Rank & Sort computation on flat tensors: values and the identity-update gradient.

Notation of Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation", ICCV
2021, Sec. 3 (see :mod:`rs_detectron2.losses.rank_sort`). For a positive i, with the negatives'
``NFP_i`` and the positives' ``R_i``, ``l_S(i)`` and sorting gradient:

    rank(i) = R_i + NFP_i,   l_R(i) = NFP_i / rank(i)
    loss_rank = mean_i l_R(i),   loss_sort = mean_i l_S(i)
    negative j:  |P| g_j = sum_i [NFP_i > eps] H(s_j - s_i) / rank(i)
                 (the primary terms l_R(i) H_ij / NFP_i, as l_R(i) / NFP_i = 1 / rank(i))
    positive i:  |P| g_i = -[NFP_i > eps] l_R(i) + (the sorting part)

The negatives' side (``NFP_i`` and ``g_j``) is the ranking core shared with AP and aLRP Loss,
:mod:`rs_detectron2.losses.ranking_core`; the positive-positive side (``R_i``, ``l_S(i)`` and the
sorting part) is :mod:`rs_detectron2.losses.positive_pairs`. O((N + P) log P) for the negatives,
O(P^2) or O(P log P) for the pairs, one host synchronisation per call, no loop over positives.
"""

import torch

from .positive_pairs import EPS, PAIR_METHODS, positive_pairs
from .ranking_core import count_negatives, gap_coefficients, negative_gradient, rank_pool

__all__ = ["rank_sort_exact"]


def rank_sort_exact(s: torch.Tensor, y: torch.Tensor, delta: float, *, pairs: str = "auto"):
    """Rank & Sort losses and their identity-update gradient for one flat ranking pool.

    Args:
        s: (n,) finite logits, float32 or float64 (not modified).
        y: (n,) targets: ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive (its quality).
        delta: half-width of the smoothed step, >= 0 (0 is the hard step).
        pairs: the positive-positive pass: ``"auto"`` (dense below a measured number of
            positives, the tree above), ``"dense"`` or ``"tree"``; all give the same values up to
            rounding.
    Returns:
        ``(loss_rank, loss_sort, grad)``: two 0-dim float64 tensors and the gradient of
        ``loss_rank`` w.r.t. ``s`` defined by the identity update, (n,) in the dtype of ``s``.
        No positives (or no entries): zeros.
    Raises:
        FloatingPointError: on non-finite logits. ValueError: on targets that are NaN or above 1,
        or an unknown ``pairs``.
    """
    if pairs not in PAIR_METHODS:
        raise ValueError(f"rank_sort_exact: pairs must be one of {PAIR_METHODS}, got {pairs!r}")
    pool = rank_pool(s, y, delta, "rank_sort_loss")
    if pool is None:
        zero = torch.zeros((), dtype=torch.float64, device=s.device)
        return zero, zero.clone(), torch.zeros_like(s)
    # The positive-positive pass runs before the walk over the negatives, so that the largest
    # temporaries of the two (its chunks, the gap of every walked entry) never live together.
    # Its chunks take a share of the input's bytes (Blocks.pair_bytes / tree_bytes per entry).
    targets = y.index_select(0, pool.idx)
    pair = positive_pairs(pool.p, targets, delta, pairs, input_entries=s.numel())
    del targets
    negatives = count_negatives(s, pool)
    nfp = negatives.nfp

    rank = pair.R.add_(nfp)
    l_rank = nfp / rank
    has_fp = nfp > EPS
    loss_rank, loss_sort = l_rank.mean(), pair.loss_sort
    weights = rank.reciprocal_().mul_(has_fp)
    # -[NFP_i > eps] l_R(i) + the sorting part, over |P|
    g_pos = torch.addcmul(pair.g_sort, l_rank, has_fp, value=-1.0).div_(nfp.numel())
    del pair, rank, l_rank, has_fp, nfp
    coefficients = gap_coefficients(pool, negatives, weights)
    del weights
    grad = negative_gradient(s, pool, negatives, coefficients)
    del coefficients
    grad[pool.idx] = g_pos.to(grad.dtype)
    return loss_rank, loss_sort, grad
