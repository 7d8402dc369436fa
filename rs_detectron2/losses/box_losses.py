"""Box and mask losses used by RS heads: aligned IoU / GIoU, score-weighted means, Dice.

Pure torch; boxes are (x1, y1, x2, y2) tensors.
"""

import torch

__all__ = ["aligned_iou", "giou_loss", "dice_loss", "weighted_mean"]


def _aligned_overlap(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float):
    """Intersection, union (>= eps) and smallest enclosing area of matched box pairs, each (N,)."""
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(dim=1)
    union = (area1 + area2 - inter).clamp(min=eps)
    enclose_wh = torch.maximum(boxes1[:, 2:], boxes2[:, 2:]) - torch.minimum(
        boxes1[:, :2], boxes2[:, :2]
    )
    enclose = enclose_wh.clamp(min=0).prod(dim=1).clamp(min=eps)
    return inter, union, enclose


def aligned_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of matched pairs ``boxes1[i]``, ``boxes2[i]``. Inputs (N, 4); output (N,) in [0, 1]."""
    inter, union, _ = _aligned_overlap(boxes1, boxes2, eps)
    return inter / union


def giou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pair GIoU loss ``1 - GIoU`` (Rezatofighi et al. 2019), no reduction.

    Args:
        pred, target: (N, 4) matched boxes; ``pred`` may require grad.
        eps: lower bound on the union and enclosing areas (1e-6, as the RS authors' mmdet code).
    Returns:
        (N,) losses in [0, 2].
    """
    inter, union, enclose = _aligned_overlap(pred, target, eps)
    giou = inter / union - (enclose - union) / enclose
    return 1.0 - giou


def weighted_mean(values: torch.Tensor, weights: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` for (N,) tensors; the denominator is taken as 1 when below eps.

    This is how RS heads average the box (and mask) loss of positives, weighted by their detached
    classification score. Empty input gives 0 (still attached to ``values``' graph).
    """
    total = weights.sum()
    denom = torch.where(total < eps, torch.ones_like(total), total)
    return (values * weights).sum() / denom


def dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-instance Dice loss ``1 - 2 sum(p t) / (sum(p^2) + sum(t^2) + eps)``.

    Args:
        pred: (N, ...) probabilities in [0, 1].
        target: (N, ...) binary (or soft) targets, same shape.
    Returns:
        (N,) losses in [0, 1].
    """
    pred = pred.flatten(1)
    target = target.flatten(1).to(pred.dtype)
    inter = (pred * target).sum(1)
    denom = (pred * pred).sum(1) + (target * target).sum(1) + eps
    return 1.0 - 2.0 * inter / denom
