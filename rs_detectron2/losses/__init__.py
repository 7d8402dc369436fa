"""Losses of rs_detectron2: pure torch, no detector or dataset knowledge.

Heads take a :class:`RankingLoss` (:class:`RankSortLoss`, :class:`APLoss` or :class:`ALRPLoss`) as
their ``ranking_loss`` argument; the functional forms are for use outside the heads.
"""

from .alrp_loss import ALRPLoss, alrp_loss
from .ap_loss import APLoss, ap_loss
from .balancing import balance_to
from .box_losses import aligned_iou, dice_loss, giou_loss, weighted_mean
from .pool import RANKING_POOLS
from .rank_sort import RankSortLoss, rank_sort_loss
from .ranking import RankingLoss, ranking_targets

__all__ = [
    "RANKING_POOLS",
    "RankingLoss",
    "ranking_targets",
    "RankSortLoss",
    "rank_sort_loss",
    "balance_to",
    "aligned_iou",
    "giou_loss",
    "dice_loss",
    "weighted_mean",
    "APLoss",
    "ap_loss",
    "ALRPLoss",
    "alrp_loss",
]
