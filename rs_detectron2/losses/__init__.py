"""Losses of rs_detectron2: pure torch, no detector or dataset knowledge."""

from .balancing import balance_to
from .box_losses import aligned_iou, dice_loss, giou_loss, weighted_mean
from .rank_sort import RankSortLoss, rank_sort_loss

__all__ = [
    "RankSortLoss",
    "rank_sort_loss",
    "balance_to",
    "aligned_iou",
    "giou_loss",
    "dice_loss",
    "weighted_mean",
]
