"""aLRP Loss (Oksuz et al., "A Ranking-based, Balanced Loss Function Unifying Classification and
Localisation in Object Detection", NeurIPS 2020): exact values, the identity-update gradient and the
localisation component, no loop over positives; and its self-balancing head loss.

Notation as in :mod:`rs_detectron2.losses.ap_loss` (``rank+``, ``NFP``, ``rank``; binary
targets: every entry with a target ``> 0`` is a positive). ``l(k)`` is the localisation error of
positive k (the head passes ``GIoU loss / (2 (1 - tau))``, in [0, 1] for tau = 0.5), and
``lbar(i) = sum_{k in P, k != i} H(s_k - s_i) l(k)``.

Classification component (the paper's identity update):

    loss_cls = mean_i NFP(i) / rank(i)          (= 1 - mean precision)
    e(i)     = [NFP(i) > 1e-5] (NFP(i) + lbar(i)) / rank(i)
    positive i:  |P| g_i = -e(i)
    negative j:  |P| g_j = sum_i e(i) H(s_j - s_i) / NFP(i)

(the localisation errors enter detached: the classifier cannot change them; the positives' and
negatives' gradients balance, the paper's Theorem 2.)

Localisation component: the positives ordered by descending logit (ties: by flat index, the
earlier entry of ``targets.flatten()`` first; the authors' code leaves tied order to an unstable
sort), ``loss_loc = mean_q (sum_{r <= q} l(r)) / rank(q)`` with the rank detached, so
``d loss_loc / d l(k) = (1 / |P|) sum_{q at or below k} 1 / rank(q)``.
"""

import functools
from typing import Dict, Optional

import torch

from .balancing import EpochSelfBalance, balance_to
from .identity_update import ExactResult, identity_update
from .pool import check_pool
from .ranking import RankingLoss, check_delta, name_errors
from .ranking_core import (
    count_negatives,
    gap_coefficients,
    negative_gradient,
    rank_pool,
    window_sums,
    windows,
)

__all__ = ["alrp_loss", "ALRPLoss"]

# The authors' threshold on the soft false-positive count below which a positive passes no
# gradient (it has nothing to push down).
_EPS = 1e-5


def _alrp_exact(s: torch.Tensor, y: torch.Tensor, loc: torch.Tensor, delta: float) -> ExactResult:
    """``(loss_cls, loss_loc)`` (0-dim float64), the identity-update gradient (n,) for flat ``s``,
    ``y`` and the gradient of ``loss_loc`` w.r.t. the flat ``loc`` (P,), float64."""
    pool = rank_pool(s, y, delta, "alrp_loss", loc=loc, keep_order=True)
    if pool is None:
        zero = torch.zeros((), dtype=torch.float64, device=s.device)
        no_loc = torch.zeros(loc.shape, dtype=torch.float64, device=loc.device)
        return ExactResult((zero, zero.clone()), torch.zeros_like(s), no_loc)
    p, order = pool.p, pool.order
    num_pos = p.numel()
    negatives = count_negatives(s, pool)
    nfp = negatives.nfp
    loc_sorted = loc.to(torch.float64).index_select(0, order)
    bounds = windows(p, delta)
    # rank+ = 1 + sum over k != i = 1/2 + sum over every k (the self term is H(0) = 1/2); lbar
    # likewise drops the self term H(0) l(i) = l(i) / 2.
    rank = 0.5 + window_sums(p, torch.ones_like(p), delta, bounds) + nfp
    lbar = window_sums(p, loc_sorted, delta, bounds) - 0.5 * loc_sorted
    has_fp = nfp > _EPS
    error = torch.where(has_fp, (nfp + lbar) / rank, 0.0)
    weights = torch.where(has_fp, error / torch.where(has_fp, nfp, 1.0), 0.0)
    loss_cls = (nfp / rank).mean()
    del nfp, lbar, has_fp
    coefficients = gap_coefficients(pool, negatives, weights)
    del weights
    grad = negative_gradient(s, pool, negatives, coefficients)
    grad[pool.idx] = (-error / num_pos).to(grad.dtype)

    # Localisation component, in the flat positive order of ``loc``: by descending logit, ties by
    # flat index, with the rank detached.
    rank_flat = torch.empty_like(rank).index_put_((order,), rank)
    s_flat = torch.empty_like(p).index_put_((order,), p)
    desc = s_flat.sort(descending=True, stable=True).indices
    inv_rank = 1.0 / rank_flat[desc]
    loss_loc = (loc.to(torch.float64)[desc].cumsum(0) * inv_rank).mean()
    grad_loc = torch.empty_like(inv_rank).index_put_(
        (desc,), inv_rank.flip(0).cumsum(0).flip(0) / num_pos
    )
    return ExactResult((loss_cls, loss_loc), grad, grad_loc)


def alrp_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loc_errors: torch.Tensor,
    delta: float = 1.0,
    *,
    pool: str = "local",
    group=None,
):
    """aLRP Loss over one ranking pool (Oksuz et al., NeurIPS 2020), split in its two components.

    Args:
        logits: tensor of any shape, the classification logits. Must be floating point and finite.
        targets: tensor of the same shape. ``< 0``: ignored; ``0``: negative; ``(0, 1]``: positive
            (binary: the value is not used).
        loc_errors: (P,) localisation errors of the P positives in the order of
            ``targets.flatten() > 0`` (e.g. ``giou_loss / (2 (1 - tau))``), floating point and
            finite; may require grad.
        delta: half-width of the smoothed step, > 0 (1.0 in the paper).
        pool: ``"local"`` (default, the authors' behaviour) or ``"global"``: the entries of every
            process of ``group`` ranked as one pool, localisation errors included (a collective:
            every process must call it).
        group: the process group of the global pool (default: all processes).

    Returns:
        ``(loss_cls, loss_loc)``: 0-dim tensors. ``loss_cls = 1 - mean precision`` (float32, or
        float64 for float64 logits) has the identity-update gradient w.r.t. ``logits`` and none
        w.r.t. ``loc_errors``. ``loss_loc`` (the localisation component, in the dtype of
        ``loc_errors`` promoted to float32) has a gradient w.r.t. ``loc_errors`` only. Add
        ``loss_cls + w * loss_loc`` (``w`` is the self-balance weight of :class:`ALRPLoss`). With
        no positives both are 0 and still attached to the graph. With a global pool both are those
        of the whole pool and the gradients are this process's slices times the world size.

    Raises:
        FloatingPointError: if any logit or localisation error is NaN or infinite.
        ValueError: on mismatched shapes, ``loc_errors`` whose length is not the number of
            positives, a delta that is not finite and > 0, targets that are NaN or above 1, or an
            unknown ``pool``.
    """
    exact = functools.partial(_alrp_exact, delta=check_delta(delta, "alrp_loss", positive=True))
    if not loc_errors.is_floating_point():
        raise TypeError(f"alrp_loss: loc_errors must be floating point, got {loc_errors.dtype}")
    return identity_update(
        exact, logits, targets, loc_errors, name="alrp_loss", pool=pool, group=group
    )


class ALRPLoss(RankingLoss, EpochSelfBalance):
    """aLRP Loss as the ranking loss of a detection head, with its self-balance (SB).

    :meth:`head_losses` takes the localisation errors of the positives as ``loss / (2 (1 - tau))``
    of their localisation losses (GIoU of boxes, Dice of masks) and returns ``{prefix}_alrp_cls``
    and ``{prefix}_alrp_loc``, the latter already multiplied by the SB weight ``w`` (the paper's
    self-balance, :class:`~rs_detectron2.losses.balancing.EpochSelfBalance`: updated after every
    ``period`` training calls). Set ``period`` to the epoch length in iterations (the authors:
    7,330 = ceil(117,266 COCO train images / 16)); one object per head, called once per iteration.

    The SB state is kept in persistent buffers (``balance_weight``, ``sum_cls``, ``sum_loc``,
    ``count``, ``period``), so it survives a resume (the authors' Python attributes reset to 50).
    Only training mode updates them. With ``sync``, every process gets the same ``w`` (the authors
    keep it per process). Wrap the model in DDP with ``broadcast_buffers=False`` (the Detectron2
    default of ``create_ddp_model`` in the configs' ``train.ddp``) so that each process keeps its
    own sums.

    Args:
        delta: half-width of the smoothed step (1.0 in the paper).
        tau: the head's positive IoU threshold; the localisation error is GIoU / (2 (1 - tau))
            (0.5 for dense heads and R-CNN, 0.7 for the RPN).
        period: training calls between SB updates (one epoch).
        init_weight: initial SB weight (50 in the paper).
        pool: ``"local"`` or ``"global"``, as for :class:`~rs_detectron2.losses.RankSortLoss`.
        group: process group of the global pool and of the SB all-reduce (None: every process).
        sync: all-reduce the SB sums across processes at the period boundary.
    """

    def __init__(
        self,
        delta: float = 1.0,
        tau: float = 0.5,
        period: int = 7330,
        init_weight: float = 50.0,
        pool: str = "local",
        group: Optional[object] = None,
        sync: bool = True,
    ):
        super().__init__(period=period, init_weight=init_weight, group=group, sync=sync)
        self.delta = check_delta(delta, "ALRPLoss", positive=True)
        self.tau = float(tau)
        if not 0 <= self.tau < 1:
            raise ValueError(f"ALRPLoss: tau must be in [0, 1), got {tau}")
        self.pool = check_pool(pool)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, loc_errors: torch.Tensor):
        return alrp_loss(logits, targets, loc_errors, self.delta, pool=self.pool, group=self.group)

    def head_losses(self, logits, targets, loc_losses, loc_weights, *, prefix, loc_name="box"):
        """``{prefix}_alrp_cls`` and ``{prefix}_alrp_loc`` (the localisation component times the
        SB weight, updated first when a period ends); see :meth:`RankingLoss.head_losses`. The
        localisation errors are ``loc_losses / (2 (1 - tau))``; ``loc_weights`` and ``loc_name``
        are not used (aLRP weights localisation by rank, in one loss)."""
        loc_errors = loc_losses.float() / (2 * (1 - self.tau))
        with name_errors(f"{prefix}_alrp_cls"):
            loss_cls, loss_loc = self(logits, targets, loc_errors)
        if self.training:
            self.update_balance(loss_cls, loss_loc)
        return {
            f"{prefix}_alrp_cls": loss_cls,
            f"{prefix}_alrp_loc": loss_loc * self.balance_weight.to(loss_loc.dtype),
        }

    def balance_auxiliary(
        self, loss: torch.Tensor, head_losses: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``loss`` rescaled so that its value equals the head's aLRP value ``loss_cls +
        loss_loc`` (unweighted by ``w``), as RS balances an auxiliary loss to its own value
        (Oksuz et al., ICCV 2021, Sec. 4.2); no gradient through the scale. The aLRP paper has no
        auxiliary branch to follow."""
        (cls,) = (v for k, v in head_losses.items() if k.endswith("_alrp_cls"))
        (loc,) = (v for k, v in head_losses.items() if k.endswith("_alrp_loc"))
        reference = cls + loc / self.balance_weight.to(loc.dtype)
        return balance_to(loss, reference)

    def scalars(self) -> Dict[str, torch.Tensor]:
        """``{"alrp_weight": w}``, the current SB weight (0-dim float64 buffer, detached)."""
        return {"alrp_weight": self.balance_weight.detach()}

    def extra_repr(self) -> str:
        return (
            f"delta={self.delta}, tau={self.tau}, pool={self.pool!r}, sync={self.sync}, "
            f"weight={float(self.balance_weight):.4g}, period={int(self.period)}"
        )
