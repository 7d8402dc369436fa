"""The loss every RS head computes: RS on the classifier, score-weighted GIoU, self-balanced.

Shared by the RPN, R-CNN and dense heads so that they differ only in how they build the inputs.
"""

from typing import Dict

import torch

from ..losses import aligned_iou, balance_to, giou_loss, rank_sort_loss, weighted_mean

__all__ = [
    "MIN_POSITIVE_QUALITY",
    "RANKING_POOLS",
    "check_ranking_pool",
    "regression_quality",
    "rs_detection_losses",
]

# The quality target of a positive whose regressed box misses its ground truth entirely. The
# authors' code turns such a positive (IoU exactly 0) into a negative; we keep it a positive that
# ranks below every other positive.
MIN_POSITIVE_QUALITY = 1e-6

# "local": each process ranks its own images (the authors' behaviour, the default);
# "global": one ranking pool over the images of every process.
RANKING_POOLS = ("local", "global")


def check_ranking_pool(ranking_pool: str) -> str:
    """Return ``ranking_pool`` if it is one of :data:`RANKING_POOLS`, else raise ValueError."""
    if ranking_pool not in RANKING_POOLS:
        raise ValueError(f"ranking_pool must be one of {RANKING_POOLS}, got {ranking_pool!r}")
    return ranking_pool


@torch.no_grad()
def regression_quality(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """RS continuous label of positives: IoU of each regressed box with its ground truth.

    Args:
        pred_boxes, gt_boxes: (P, 4) XYXY boxes in the same coordinates (detached here).
    Returns:
        (P,) float32 qualities in [MIN_POSITIVE_QUALITY, 1].
    """
    iou = aligned_iou(pred_boxes.detach().float(), gt_boxes.detach().float())
    return iou.clamp(min=MIN_POSITIVE_QUALITY, max=1.0)


def rs_detection_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_pred_boxes: torch.Tensor,
    pos_gt_boxes: torch.Tensor,
    pos_box_weights: torch.Tensor,
    *,
    prefix: str,
    delta: float = 0.5,
    ranking_pool: str = "local",
) -> Dict[str, torch.Tensor]:
    """RS classification loss plus the self-balanced, score-weighted GIoU box loss of one head.

    Args:
        logits: classification logits of the whole ranking pool, any shape (e.g. (R, K)).
        targets: same shape: -1 ignored, 0 negative, quality in (0, 1] for positives.
        pos_pred_boxes: (P, 4) decoded boxes of the positives (with grad), XYXY.
        pos_gt_boxes: (P, 4) their ground-truth boxes.
        pos_box_weights: (P,) detached weights of the box loss, the positives' max-class scores.
        prefix: key prefix, e.g. ``"loss_rpn"`` gives ``loss_rpn_rank``, ``_sort``, ``_box``.
        delta: RS smoothing (0.5 in the paper).
        ranking_pool: ``"local"`` ranks this process's images (the authors' behaviour);
            ``"global"`` ranks the whole batch of every process as one pool (see
            :func:`rs_detectron2.losses.rank_sort_loss`; every process must call this).
    Returns:
        dict with ``{prefix}_rank`` (carries the whole RS gradient), ``{prefix}_sort`` (value only,
        no gradient) and ``{prefix}_box`` (GIoU rescaled so that its value equals rank + sort).
    """
    try:
        loss_rank, loss_sort = rank_sort_loss(logits, targets, delta, pool=ranking_pool)
    except FloatingPointError as e:  # name the head whose logits went bad
        raise FloatingPointError(f"{prefix}_rank: {e}") from e
    giou = giou_loss(pos_pred_boxes.float(), pos_gt_boxes.float())
    loss_box = weighted_mean(giou, pos_box_weights.detach().float())
    return {
        f"{prefix}_rank": loss_rank,
        f"{prefix}_sort": loss_sort,
        f"{prefix}_box": balance_to(loss_box, loss_rank + loss_sort),
    }
