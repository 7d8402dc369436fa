"""Rank & Sort (RS) loss: exact values and the identity-update gradient, no loop over positives.

Notation (Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation", ICCV
2021, Sec. 3). ``s`` are logits, ``y`` targets; P = {y > 0} (positives, ``y`` is their
localisation quality), N = {y == 0} (negatives), ``y < 0`` is ignored. ``H`` is the step function
smoothed linearly on [-delta, delta] (the hard step ``[x >= 0]`` when ``delta == 0``).
For a positive i, with ``H_ik = H(s_k - s_i)``:

    R_i   = sum_{k in P} H_ik                      (rank among positives, self term included)
    NFP_i = sum_{j in N} H_ij                      (soft count of negatives above i)
    l_R(i) = NFP_i / (R_i + NFP_i)                 (ranking error)
    D_i = sum_{k in P, y_k < y_i} H_ik,  E_i = same sum weighted by (1 - y_k)
    A_i = R_i - D_i,  B_i = sum_{k in P, y_k >= y_i} H_ik (1 - y_k)
    l_S(i) = (A_i E_i - B_i D_i) / (A_i R_i)       (current minus target sorting error)

``loss_rank = mean_i l_R(i)``, ``loss_sort = mean_i l_S(i)``. The gradient is the identity update
(the paper's Sec. 3 and its Algorithm 1), with eps = 1e-10 guards exactly as in the authors' code:

    negative j:  |P| g_j = sum_i [NFP_i > eps] H_ij / (R_i + NFP_i)
    positive i:  |P| g_i = -[NFP_i > eps] l_R(i) - [D_i > eps] l_S(i)
                           + sum_{k: y_i < y_k} [D_k > eps] l_S(k) H_ki / D_k

How it is computed: see :mod:`rs_detectron2.losses.rank_sort_exact` (O((N + P) log P) for the
negatives, one host synchronisation per call, no Python loop over positives). This module gives it
the identity-update autograd form (:mod:`rs_detectron2.losses.identity_update`: shapes, dtypes,
autocast, the local or global ranking pool) and the module form that detection heads take.
"""

import functools
from typing import Dict, Optional, Tuple

import torch

from .balancing import balance_to
from .box_losses import weighted_mean
from .identity_update import ExactResult, identity_update
from .pool import check_pool
from .rank_sort_exact import rank_sort_exact
from .ranking import RankingLoss, check_delta, name_errors

__all__ = ["rank_sort_loss", "RankSortLoss"]


def _exact(s: torch.Tensor, y: torch.Tensor, delta: float) -> ExactResult:
    loss_rank, loss_sort, grad = rank_sort_exact(s, y, delta)
    # The identity-update gradient carries both the ranking and the sorting parts; it is scaled
    # only by the upstream gradient of loss_rank (the authors' semantics).
    return ExactResult((loss_rank, loss_sort), grad)


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
            every process must call it, also one without positives or entries).
        group: the process group of the global pool (default: all processes).

    Returns:
        ``(loss_rank, loss_sort)``: 0-dim tensors in float32 (float64 for float64 logits), the mean
        ranking error and the mean sorting error over the positives. The gradient of ``loss_rank``
        w.r.t. ``logits`` is the full identity-update gradient (ranking and sorting parts), scaled
        only by the upstream gradient of ``loss_rank``; ``loss_sort`` has no gradient (log it and
        add it to the total, as the authors do). With no positives both losses are 0 and
        ``loss_rank`` is still attached to the graph, with a zero gradient; so does empty input.
        With a global pool both losses are those of the whole pool, identical on every process, and
        the gradient is this process's slice times the world size (DDP's averaging then gives the
        gradient of the global loss).

    Raises:
        FloatingPointError: if any logit is NaN or infinite.
        ValueError: on mismatched shapes, a negative or infinite delta, targets that are NaN or
            above 1, or an unknown ``pool``.
    """
    exact = functools.partial(_exact, delta=check_delta(delta))
    return identity_update(exact, logits, targets, name="rank_sort_loss", pool=pool, group=group)


class RankSortLoss(RankingLoss):
    """The RS loss as the ranking loss of a detection head (Oksuz et al., ICCV 2021, Sec. 4).

    ``forward(logits, targets) -> (loss_rank, loss_sort)`` is :func:`rank_sort_loss`.
    :meth:`head_losses` adds the score-weighted localisation loss (GIoU of the boxes, or Dice of
    the masks), and :meth:`balance_auxiliary` weights auxiliary losses (the mask loss), both
    rescaled every iteration so that their value
    equals ``loss_rank + loss_sort`` (the paper's tuning-free task balancing; no gradient through
    the scale).

    Args:
        delta: half-width of the smoothed step (0.5 in the paper).
        pool: ``"local"`` (the authors' behaviour: each process ranks its own images) or
            ``"global"`` (one pool over the images of every process of ``group``).
        group: process group of the global pool (None: every process).
    """

    def __init__(self, delta: float = 0.5, pool: str = "local", group: Optional[object] = None):
        super().__init__()
        self.delta = check_delta(delta)
        self.pool = check_pool(pool)
        self.group = group

    def forward(self, logits: torch.Tensor, targets: torch.Tensor):
        return rank_sort_loss(logits, targets, self.delta, pool=self.pool, group=self.group)

    def head_losses(self, logits, targets, loc_losses, loc_weights, *, prefix, loc_name="box"):
        """``{prefix}_rank`` (carries the whole RS gradient), ``{prefix}_sort`` (value only) and
        ``{prefix}_{loc_name}`` (the score-weighted mean localisation loss rescaled so that its
        value equals rank + sort); see :meth:`RankingLoss.head_losses` for the arguments."""
        with name_errors(f"{prefix}_rank"):
            loss_rank, loss_sort = self(logits, targets)
        loss_loc = weighted_mean(loc_losses.float(), loc_weights.detach().float())
        return {
            f"{prefix}_rank": loss_rank,
            f"{prefix}_sort": loss_sort,
            f"{prefix}_{loc_name}": balance_to(loss_loc, loss_rank + loss_sort),
        }

    def balance_auxiliary(
        self, loss: torch.Tensor, head_losses: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``loss`` rescaled so that its value equals the head's rank + sort losses."""
        reference = sum(v for k, v in head_losses.items() if k.endswith(("_rank", "_sort")))
        return balance_to(loss, reference)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, pool={self.pool!r}"
