"""AP Loss (Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019):
exact values and the identity-update gradient, no loop over positives.

Notation as in :mod:`rs_detectron2.losses.ranking_core`: ``H`` the smoothed step, ``NFP(i)`` the
soft count of negatives above positive i. Targets are binary: every entry with a target ``> 0`` is
a positive, whatever its value. For a positive i:

    rank+(i) = 1 + sum_{k in P, k != i} H(s_k - s_i)      (the self term is replaced by 1)
    rank(i)  = rank+(i) + NFP(i),   prec(i) = rank+(i) / rank(i)
    interpolated precision  p^(i) = max over positives k with s_k <= s_i of prec(k)
                                    (a running maximum from the lowest-scored positive up)
    loss                    L_AP  = 1 - mean_i p^(i)

The gradient is the error-driven (identity) update of the AP-Loss paper (its primary terms are
``L_ij = (1 - p^(i)) H(s_j - s_i) / NFP(i)`` for a negative j, 0 where NFP(i) = 0):

    positive i:  |P| g_i = -(1 - p^(i))
    negative j:  |P| g_j = sum_i [NFP(i) > 0] (1 - p^(i)) H(s_j - s_i) / NFP(i)

so the positives' and the negatives' gradients balance (sum_P |g| = sum_N g). ``NFP(i) > 0`` is
decided on the exact count of negatives with ``H > 0``, never on a float sum.
"""

import functools
from typing import Dict, Optional

import torch

from .box_losses import weighted_mean
from .identity_update import ExactResult, identity_update
from .pool import check_pool
from .ranking import RankingLoss, check_delta, name_errors
from .ranking_core import (
    count_negatives,
    gap_coefficients,
    negative_gradient,
    rank_pool,
    window_sums,
)

__all__ = ["ap_loss", "APLoss"]


def _ap_exact(s: torch.Tensor, y: torch.Tensor, delta: float) -> ExactResult:
    """The loss (0-dim float64) and its identity-update gradient (n,) for flat ``s``, ``y``."""
    pool = rank_pool(s, y, delta, "ap_loss")
    if pool is None:
        return ExactResult(
            (torch.zeros((), dtype=torch.float64, device=s.device),), torch.zeros_like(s)
        )
    negatives = count_negatives(s, pool)
    nfp = negatives.nfp
    # rank+ = 1 + sum over k != i = 1/2 + sum over every k (the self term is H(0) = 1/2).
    rank_pos = 0.5 + window_sums(pool.p, torch.ones_like(pool.p), delta)
    # Ascending logit order: the running maximum is the interpolated precision.
    error = 1.0 - (rank_pos / (rank_pos + nfp)).cummax(0).values
    has_fp = (negatives.num_fp > 0) & (nfp > 0)
    weights = torch.where(has_fp, error / torch.where(has_fp, nfp, 1.0), 0.0)
    del nfp, has_fp
    coefficients = gap_coefficients(pool, negatives, weights)
    del weights
    grad = negative_gradient(s, pool, negatives, coefficients)
    grad[pool.idx] = (-error / error.numel()).to(grad.dtype)
    return ExactResult((error.mean(),), grad)


def ap_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    delta: float = 1.0,
    *,
    pool: str = "local",
    group=None,
) -> torch.Tensor:
    """AP Loss over one ranking pool (Chen et al., CVPR 2019).

    Args:
        logits: tensor of any shape, the classification logits (e.g. images x anchors x classes).
            Must be floating point and finite.
        targets: tensor of the same shape. ``< 0``: ignored; ``0``: negative; ``(0, 1]``: positive
            (binary: the value is not used, so the IoU targets of RS heads can be passed as is).
        delta: half-width of the smoothed step, > 0 (1.0 in the AP-Loss and aLRP papers).
        pool: ``"local"`` (default, the authors' behaviour) ranks this process's entries only;
            ``"global"`` ranks the entries of every process of ``group`` as one pool (a collective:
            every process must call it).
        group: the process group of the global pool (default: all processes).

    Returns:
        0-dim loss ``1 - mean interpolated precision`` of the positives, in float32 (float64 for
        float64 logits). Its gradient w.r.t. ``logits`` is the identity-update gradient (see the
        module docstring); ignored entries and negatives below every positive's window get 0.
        With no positives (or empty input) the loss is 0, still attached to the graph with a zero
        gradient. With a global pool the loss is that of the whole pool, identical on every
        process, and the gradient is this process's slice times the world size.

    Raises:
        FloatingPointError: if any logit is NaN or infinite.
        ValueError: on mismatched shapes, a delta that is not finite and > 0, targets that are NaN
            or above 1, or an unknown ``pool``.
    """
    exact = functools.partial(_ap_exact, delta=check_delta(delta, "ap_loss", positive=True))
    (loss,) = identity_update(exact, logits, targets, name="ap_loss", pool=pool, group=group)
    return loss


class APLoss(RankingLoss):
    """AP Loss as the ranking loss of a detection head, with a constant-weight box loss.

    ``forward(logits, targets) -> loss`` is :func:`ap_loss`. :meth:`head_losses` adds
    ``box_weight`` x the score-weighted mean GIoU loss of the positives (normalised by the sum of
    the weights before the constant, as in the Bucketed Ranking-based Losses recipe for ATSS,
    Yavuz et al., ECCV 2024). AP Loss has no self-balancing: the weights are constants.

    Args:
        delta: half-width of the smoothed step (1.0 in the AP-Loss paper).
        box_weight: constant weight of the box loss (2.0 in the ATSS recipe).
        pool: ``"local"`` or ``"global"``, as for :class:`~rs_detectron2.losses.RankSortLoss`.
        group: process group of the global pool (None: every process).
    """

    def __init__(
        self,
        delta: float = 1.0,
        box_weight: float = 2.0,
        pool: str = "local",
        group: Optional[object] = None,
    ):
        super().__init__()
        self.delta = check_delta(delta, "APLoss", positive=True)
        self.box_weight = float(box_weight)
        self.pool = check_pool(pool)
        self.group = group

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ap_loss(logits, targets, self.delta, pool=self.pool, group=self.group)

    def head_losses(self, logits, targets, loc_losses, loc_weights, *, prefix, loc_name="box"):
        """``{prefix}_ap`` (the AP loss) and ``{prefix}_{loc_name}`` (``box_weight`` x the
        score-weighted mean localisation loss); see :meth:`RankingLoss.head_losses`."""
        with name_errors(f"{prefix}_ap"):
            loss_ap = self(logits, targets)
        loss_loc = weighted_mean(loc_losses.float(), loc_weights.detach().float())
        return {f"{prefix}_ap": loss_ap, f"{prefix}_{loc_name}": self.box_weight * loss_loc}

    def balance_auxiliary(
        self, loss: torch.Tensor, head_losses: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``loss`` x ``box_weight``. The AP-Loss recipes have no auxiliary branch; an auxiliary
        loss (a mask loss) is weighted like the box loss, as RS weights its box and mask losses
        alike (Oksuz et al., ICCV 2021, Sec. 4.2)."""
        return self.box_weight * loss

    def extra_repr(self) -> str:
        return f"delta={self.delta}, box_weight={self.box_weight}, pool={self.pool!r}"
