"""RS-SOLOv2: SOLOv2 trained with the Rank & Sort loss (Oksuz et al., ICCV 2021, and the
authors' RS-SOLOv2 code): RS replaces the focal loss, and the mask loss is weighted by the scores
and balanced to RS instead of a weight of 3."""

from typing import Dict, Optional

from torch import Tensor

from ...losses import RankingLoss, RankSortLoss, dice_loss, ranking_targets
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..quality import MIN_POSITIVE_QUALITY
from .meta_arch import DICE_EPS, SOLOv2
from .targets import SOLOv2Targets

__all__ = ["RSSOLOv2"]


class RSSOLOv2(SOLOv2):
    """:class:`SOLOv2` whose :meth:`losses` are RS-SOLOv2's.

    - One ranking-loss call over all grid cells x classes of the batch (no ignored entries). A
      positive cell's entry of its class has as target the soft Dice coefficient of the cell's
      predicted mask with its own ground truth (detached); every other entry is a negative.
    - The mask loss is the Dice loss of the positives, averaged with their detached max-class
      scores as weights and balanced by the ranking loss (RS: rescaled so that its value equals
      rank + sort).
    - Overlapping objects: the first one in annotation order keeps a shared cell
      (``first_come``), so every positive has exactly one mask and one quality; the targets are
      built in raster order of the cells, so qualities and category entries of the positives
      line up (the authors' code pairs them in two different orders).

    Losses: the ranking loss's ``head_losses`` prefixed ``loss_solo`` (with RS
    ``loss_solo_rank``, ``loss_solo_sort``, ``loss_solo_mask``). Inference is
    SOLOv2's, maskness included.
    """

    def __init__(
        self, *, ranking_loss: Optional[RankingLoss] = None, first_come: bool = True, **kwargs
    ):
        """
        Args:
            ranking_loss: the classifier's ranking loss and the weighting of the mask loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5); any
                :class:`RankingLoss` (AP, aLRP) trains the head through its ``head_losses``.
            first_come: must be True (one quality per positive entry).
            kwargs: the arguments of :class:`SOLOv2`; its focal-loss and mask-weight options do
                not apply.
        """
        if not first_come:
            raise ValueError("RS-SOLOv2 needs first_come=True: one mask quality per positive cell")
        super().__init__(first_come=True, **kwargs)
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        """RS over all cells x classes with Dice qualities, and the balanced score-weighted Dice.

        Args:
            logits: (N, C, K) category logits of all cells (levels concatenated, raster order).
            mask_logits: (P, H', W') mask logits of the positive cells (one each).
            targets: see :class:`SOLOv2Targets`.
        Returns:
            the ranking loss's :meth:`~rs_detectron2.losses.RankingLoss.head_losses` of the Dice
            losses, prefixed ``loss_solo`` (``loss_solo_mask``: the localisation term).
        """
        logits = logits.float()
        pos_img, pos_cell = targets.pos_img, targets.pos_cell
        dice = dice_loss(
            mask_logits.float().sigmoid(), targets.gt_masks[targets.pos_gt], eps=DICE_EPS
        )
        # written by index: each quality lands on its own cell's entry
        quality = (1.0 - dice.detach()).clamp(min=MIN_POSITIVE_QUALITY, max=1.0)
        positives = (pos_img, pos_cell, targets.labels[pos_img, pos_cell])
        rs_targets = ranking_targets(logits, positives, quality)
        weights = logits[pos_img, pos_cell].detach().sigmoid().amax(dim=1)
        put_mean_loss_scalar("solo/dice_loss", dice)  # unweighted: loss_solo_mask is balanced
        losses = self.ranking_loss.head_losses(
            logits, rs_targets, dice, weights, prefix="loss_solo", loc_name="mask"
        )
        put_ranking_loss_scalars(self.ranking_loss, "solo")
        return losses
