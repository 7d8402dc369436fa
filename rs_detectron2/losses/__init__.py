"""Losses of rs_detectron2: pure torch, no detector or dataset knowledge.

Heads take a :class:`RankingLoss` (:class:`RankSortLoss`, :class:`APLoss` or :class:`ALRPLoss`) as
their ``ranking_loss`` argument; the functional forms are for use outside the heads.

Modules: ``ranking`` (the interface heads take), ``rank_sort`` / ``ap_loss`` / ``alrp_loss`` (the
three losses), ``rank_sort_exact`` (RS on flat tensors), ``ranking_core`` (the exact negatives'
side the three share), ``positive_pairs`` (RS's positive-positive sums), ``identity_update`` (the
autograd Function), ``pool`` (local / global ranking pools), ``balancing`` (task balancing),
``box_losses`` (IoU, GIoU, Dice).
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
