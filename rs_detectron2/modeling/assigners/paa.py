"""PAA: Probabilistic Anchor Assignment (Kim & Lee, ECCV 2020), as used by RS-PAA.

The per-GT split fits a two-component 1-D Gaussian mixture to the candidates' losses with a small,
deterministic EM written here in torch (mmdet calls scikit-learn's ``GaussianMixture``; the
EM below follows the same initialisation, updates and stopping rule, batched over GTs).
"""

import math
from typing import NamedTuple, Optional

import torch
from fvcore.nn import sigmoid_focal_loss

from detectron2.modeling.matcher import Matcher
from detectron2.structures import pairwise_iou

from ...losses import giou_loss
from .base import AnchorAssigner

__all__ = ["PAAAssigner", "GaussianMixture1D", "fit_gmm_1d", "paa_split", "paa_anchor_scores"]

_EPS64 = torch.finfo(torch.float64).eps


class GaussianMixture1D(NamedTuple):
    """A batch of fitted two-component 1-D Gaussian mixtures, one per row."""

    means: torch.Tensor  # (G, 2)
    variances: torch.Tensor  # (G, 2)
    weights: torch.Tensor  # (G, 2)
    assignment: torch.Tensor  # (G, M) int64: most likely component of each sample (0 or 1)
    log_density: torch.Tensor  # (G, M) log mixture density of each sample (-inf where invalid)
    num_iters: torch.Tensor  # (G,) EM iterations run per row


def _weighted_log_prob(x, means, variances, weights):
    """(G, M, 2) log N(x | mean_k, var_k) + log w_k."""
    diff = x[:, :, None] - means[:, None, :]
    return (
        -0.5
        * (
            math.log(2 * math.pi)
            + variances.log()[:, None, :]
            + diff * diff / variances[:, None, :]
        )
        + weights.log()[:, None, :]
    )


def fit_gmm_1d(
    x: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-5,
) -> GaussianMixture1D:
    """Fit a two-component Gaussian mixture to each row of ``x`` by EM (float64, deterministic).

    Same procedure as scikit-learn's ``GaussianMixture(2, weights_init=[.5, .5],
    means_init=[min, max], precisions_init=[1, 1], reg_covar=1e-5)`` as mmdet's PAA head calls it:
    start from equal weights, unit variances and the means at the row's minimum and maximum; each
    iteration does an E-step (responsibilities and the mean log-likelihood), then an M-step
    (weights nk / n, weighted means, weighted variances + ``reg_covar``, with nk padded by 10 eps);
    a row stops once its mean log-likelihood changes by less than ``tol`` (its M-step of that
    iteration included), at most ``max_iter`` iterations. A final E-step with the fitted
    parameters gives the component assignment (argmax, ties to component 0) and the log density.

    Args:
        x: (G, M) or (M,) samples (e.g. the losses of one GT's candidate anchors per row).
        valid: same shape, which entries are samples (rows may have different counts). Rows with
            fewer than 2 samples are not fitted (their outputs are meaningless, assignment -1).
        max_iter, tol, reg_covar: as scikit-learn's defaults.
    Returns:
        :class:`GaussianMixture1D` (rows in float64; 1-D input gives G = 1).
    """
    if x.dim() == 1:
        x = x[None]
        valid = None if valid is None else valid[None]
    x = x.detach().to(torch.float64)
    valid = torch.ones_like(x, dtype=torch.bool) if valid is None else valid.to(torch.bool)
    num_rows, _ = x.shape
    count = valid.sum(dim=1)  # (G,)
    fitted = count >= 2
    valid = valid & fitted[:, None]
    n = count.clamp(min=1).to(torch.float64)
    xv = torch.where(valid, x, torch.zeros_like(x))  # no inf / nan in the arithmetic

    inf = torch.tensor(math.inf, dtype=torch.float64, device=x.device)
    x_min = torch.where(valid, x, inf).amin(dim=1)
    x_max = torch.where(valid, x, -inf).amax(dim=1)
    means = torch.stack([x_min, x_max], dim=1)
    means = torch.where(fitted[:, None], means, torch.zeros_like(means))
    variances = torch.ones_like(means)
    weights = torch.full_like(means, 0.5)

    lower_bound = torch.full((num_rows,), -math.inf, dtype=torch.float64, device=x.device)
    active = fitted.clone()
    num_iters = torch.zeros(num_rows, dtype=torch.int64, device=x.device)
    mask = valid.to(torch.float64)
    for _ in range(max_iter):
        if not bool(active.any()):  # one host sync per iteration, at most max_iter
            break
        # E-step
        log_prob = _weighted_log_prob(xv, means, variances, weights)
        log_norm = torch.logsumexp(log_prob, dim=2)  # (G, M)
        new_bound = (log_norm * mask).sum(dim=1) / n
        resp = (log_prob - log_norm[:, :, None]).exp() * mask[:, :, None]
        # M-step
        nk = resp.sum(dim=1) + 10 * _EPS64  # (G, 2)
        new_means = (resp * xv[:, :, None]).sum(dim=1) / nk
        diff = xv[:, :, None] - new_means[:, None, :]
        new_vars = (resp * diff * diff).sum(dim=1) / nk + reg_covar
        new_weights = nk / nk.sum(dim=1, keepdim=True)

        upd = active[:, None]
        means = torch.where(upd, new_means, means)
        variances = torch.where(upd, new_vars, variances)
        weights = torch.where(upd, new_weights, weights)
        num_iters = num_iters + active.to(torch.int64)
        converged = (new_bound - lower_bound).abs() < tol
        lower_bound = torch.where(active, new_bound, lower_bound)
        active = active & ~converged

    log_prob = _weighted_log_prob(xv, means, variances, weights)
    log_density = torch.logsumexp(log_prob, dim=2)
    assignment = log_prob.argmax(dim=2)
    assignment = torch.where(valid, assignment, torch.full_like(assignment, -1))
    log_density = torch.where(valid, log_density, torch.full_like(log_density, -math.inf))
    return GaussianMixture1D(means, variances, weights, assignment, log_density, num_iters)


def paa_split(
    scores: torch.Tensor, valid: Optional[torch.Tensor] = None, **gmm_kwargs
) -> torch.Tensor:
    """PAA's positive / negative split of each GT's candidates (mmdet ``gmm_separation_scheme``).

    Fits :func:`fit_gmm_1d` per row; component 0 starts at the lowest score (the likely
    positives). The positives are the candidates assigned to component 0 whose score is at most
    that of the component-0 candidate with the highest mixture density (the PAA paper's Fig. 3(c)
    scheme); everything else is negative. A row with fewer than 2 candidates gets no positives
    (mmdet skips the GT, so its candidates become negatives).

    Args:
        scores: (G, M) or (M,) candidate scores, lower is better (PAA: focal + GIoU loss).
        valid: same shape, which entries are candidates.
        gmm_kwargs: ``max_iter``, ``tol``, ``reg_covar`` of :func:`fit_gmm_1d`.
    Returns:
        bool tensor shaped like ``scores``: the positives.
    """
    squeeze = scores.dim() == 1
    if squeeze:
        scores = scores[None]
        valid = None if valid is None else valid[None]
    scores = scores.detach().to(torch.float64)
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    # Work in ascending score order within each row (invalid entries last).
    keyed = torch.where(valid, scores, torch.full_like(scores, math.inf))
    order = torch.argsort(keyed, dim=1, stable=True)
    sorted_scores = scores.gather(1, order)
    sorted_valid = valid.gather(1, order)

    gmm = fit_gmm_1d(sorted_scores, sorted_valid, **gmm_kwargs)
    fg = gmm.assignment == 0
    fg_density = torch.where(fg, gmm.log_density, torch.full_like(gmm.log_density, -math.inf))
    peak = fg_density.argmax(dim=1)  # first position of the highest fg density
    column = torch.arange(scores.shape[1], device=scores.device)
    sorted_pos = fg & (column[None, :] <= peak[:, None])

    positives = torch.zeros_like(sorted_pos)
    positives.scatter_(1, order, sorted_pos)
    return positives[0] if squeeze else positives


def paa_anchor_scores(
    pred_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """PAA's per-anchor score (mmdet ``PAAHead.get_pos_loss``): focal loss summed over classes
    (target: one-hot GT class) plus the GIoU loss of the predicted box. Lower is better.

    Args:
        pred_logits: (P, K) logits of the candidate anchors.
        pred_boxes: (P, 4) their decoded predicted boxes (XYXY).
        gt_classes: (P,) class of each candidate's GT; gt_boxes: (P, 4) its box.
    Returns:
        (P,) float32 scores (no gradient).
    """
    logits = pred_logits.detach().float()
    target = torch.zeros_like(logits)
    target[torch.arange(len(logits), device=logits.device), gt_classes] = 1.0
    focal = sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="none").sum(1)
    return focal + giou_loss(pred_boxes.detach().float(), gt_boxes.float())


def _rank_within_groups(keys: torch.Tensor) -> torch.Tensor:
    """For a sorted 1-D ``keys``, the position of each entry within its run of equal keys."""
    first = torch.searchsorted(keys, keys, right=False)
    return torch.arange(len(keys), device=keys.device) - first


class PAAAssigner(AnchorAssigner):
    """Probabilistic anchor assignment of RS-PAA (mmdet ``PAAHead`` ``paa_reassign``).

    1. Candidates: max-IoU assignment at ``iou_threshold`` (0.1; RS-PAA: positive >= 0.1,
       negative below, every GT also takes its best anchor(s)); its ignored anchors stay ignored.
    2. Each candidate is scored with :func:`paa_anchor_scores` (focal + GIoU of the current
       prediction against its GT; lower is better).
    3. Per GT and level, the ``topk`` lowest-scoring candidates are kept (ties by anchor index).
    4. Per GT, :func:`paa_split` fits a two-component GMM to the kept scores and takes the
       low-score component up to its density peak as positives.
    5. All other candidates become negatives.

    Needs the image's predictions: ``pred_logits`` (R, K) and decoded ``pred_boxes`` (R, 4).
    An image without ground truth gets negatives only.
    """

    uses_predictions = True

    def __init__(
        self,
        iou_threshold: float = 0.1,
        topk: int = 9,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        gmm_max_iter: int = 100,
        gmm_tol: float = 1e-3,
        gmm_reg_covar: float = 1e-5,
    ):
        """
        Args:
            iou_threshold: IoU of the candidate (max-IoU) assignment (0.1 in PAA / RS-PAA).
            topk: candidates kept per GT and level (9).
            focal_alpha, focal_gamma: of the focal part of :func:`paa_anchor_scores`.
            gmm_max_iter, gmm_tol, gmm_reg_covar: EM settings of :func:`fit_gmm_1d`.
        """
        self.iou_threshold = float(iou_threshold)
        self.matcher = Matcher([self.iou_threshold], [0, 1], allow_low_quality_matches=True)
        self.topk = int(topk)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.gmm_kwargs = dict(
            max_iter=int(gmm_max_iter), tol=float(gmm_tol), reg_covar=float(gmm_reg_covar)
        )

    def __repr__(self):
        return (
            f"PAAAssigner(iou_threshold={self.iou_threshold}, topk={self.topk}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}, "
            f"gmm={self.gmm_kwargs})"
        )

    def assign(self, anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes):
        """See :class:`AnchorAssigner`: ``pred_logits`` (R, K) and the decoded ``pred_boxes``
        (R, 4) of the image are required; the ignored anchors of step 1 stay ignored."""
        device = anchors.tensor.device
        gt_boxes = gt_instances.gt_boxes
        matched_idxs, labels = self.matcher(pairwise_iou(gt_boxes, anchors))

        cand = torch.nonzero(labels == 1).squeeze(1)  # (C,) candidate anchors
        cand_gt = matched_idxs[cand]
        scores = paa_anchor_scores(
            pred_logits[cand],
            pred_boxes[cand],
            gt_instances.gt_classes[cand_gt],
            gt_boxes.tensor[cand_gt],
            self.focal_alpha,
            self.focal_gamma,
        )
        level_starts = torch.tensor(num_anchors_per_level, device=device).cumsum(0)
        cand_level = torch.searchsorted(level_starts, cand, right=True)

        # Keep the topk lowest scores per (GT, level): sort by score, then stably by group.
        num_levels = len(num_anchors_per_level)
        by_score = torch.argsort(scores, stable=True)
        group = (cand_gt * num_levels + cand_level)[by_score]
        by_group = torch.argsort(group, stable=True)
        order = by_score[by_group]
        keep = order[_rank_within_groups(group[by_group]) < self.topk]

        # One row per GT, its kept candidates' scores (padded; paa_split sorts them itself).
        kept_gt = cand_gt[keep]
        by_gt = torch.argsort(kept_gt, stable=True)
        keep, kept_gt = keep[by_gt], kept_gt[by_gt]
        column = _rank_within_groups(kept_gt)
        num_gt = len(gt_boxes)
        width = self.topk * num_levels
        row_scores = scores.new_zeros((num_gt, width), dtype=torch.float64)
        row_valid = torch.zeros((num_gt, width), dtype=torch.bool, device=device)
        row_anchor = torch.zeros((num_gt, width), dtype=torch.int64, device=device)
        row_scores[kept_gt, column] = scores[keep].double()
        row_valid[kept_gt, column] = True
        row_anchor[kept_gt, column] = cand[keep]

        positives = paa_split(row_scores, row_valid, **self.gmm_kwargs)
        labels[cand] = 0
        labels[row_anchor[positives]] = 1
        return matched_idxs, labels
