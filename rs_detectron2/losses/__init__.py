"""Losses of rs_detectron2: pure torch, no detector or dataset knowledge."""

from .rank_sort import RankSortLoss, rank_sort_loss

__all__ = ["RankSortLoss", "rank_sort_loss"]
