"""RS-SOLOv2: SOLOv2 trained with the Rank & Sort loss (Oksuz et al., ICCV 2021, and the
authors' RS-SOLOv2 code): RS replaces the focal loss, and the mask loss is weighted by the scores
and balanced to RS instead of a weight of 3."""

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...losses import RankingLoss, RankSortLoss, dice_loss, ranking_targets
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..quality import MIN_POSITIVE_QUALITY
from .meta_arch import DICE_EPS, SOLOv2
from .targets import SOLOv2Targets

__all__ = ["PAIRINGS", "RSSOLOv2", "released_orders"]

#: the allowed values of ``RSSOLOv2(pairing=...)``
PAIRINGS = ("paper", "released")


def released_orders(
    pos_img: Tensor,
    pos_cell: Tensor,
    pos_gt: Tensor,
    num_grids: Sequence[int],
    num_images: int,
    num_gts: int,
) -> Tuple[Tensor, Tensor]:
    """The two orders in which the authors' released RS-SOLOv2 lists the positives.

    - Raster order, key (level, image, cell): the order of its Dice targets in the category
      grid and of its mask-loss weights (the positives' scores).
    - Grid order, key (level, image, ground truth in annotation order, cell): the order of its
      per-positive Dice losses.

    Both group the positives by (level, image), so they differ only inside a group holding two or
    more objects. A positive's level comes from its flat cell index and the levels' offsets
    (sum of S^2 of the levels before it). The keys are unique (one positive per image and cell),
    the sorts stable.

    Args:
        pos_img, pos_cell, pos_gt: (P,) int64 positives as in :class:`SOLOv2Targets` (``pos_cell``
            with the level offset, ``pos_gt`` indexing the batch's ground truths, images in order).
        num_grids: S of each level.
        num_images: N, the batch size.
        num_gts: G, the number of ground truths of the batch.
    Returns:
        ``(raster, grid)``: (P,) int64 indices into the positives; ``raster[k]`` / ``grid[k]`` is
        the k-th positive in raster / grid order.
    """
    num_cells = sum(s * s for s in num_grids)
    # level of each positive: the number of level starts (after the first) at or below its cell;
    # Python-int comparisons, so no host-device copy
    level = torch.zeros_like(pos_cell)
    start = 0
    for s in list(num_grids)[:-1]:
        start += s * s
        level += pos_cell >= start
    group = level * num_images + pos_img  # (level, image)
    raster_key = group * num_cells + pos_cell
    grid_key = (group * max(num_gts, 1) + pos_gt) * num_cells + pos_cell
    raster = torch.sort(raster_key, stable=True).indices
    grid = torch.sort(grid_key, stable=True).indices
    return raster, grid


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
      line up.
    - ``pairing``: how the Dice qualities and the score weights are matched to the positives.
      ``"paper"`` (default, the method of the paper): each positive's category entry gets the
      quality of its own mask, and its own mask's Dice loss is weighted by its own score.
      ``"released"`` reproduces the authors' released RS-SOLOv2 code
      (kemaloksuz/RankSortLoss-Solov2), which lists the qualities and the weights in raster order
      (level, image, cell) but the Dice losses in grid order (level, image, object, cell), see
      :func:`released_orders`: the k-th positive in raster order gets the quality of the k-th
      positive in grid order, and the k-th Dice loss in grid order is weighted by the score of the
      k-th positive in raster order. Whenever two or more objects share an image and a level, some
      positives get another object's quality and weight. It exists to reproduce the released
      numbers (trained that way); it is not the paper's method. The ranking loss, the Dice losses
      and everything else are the same under both.

    Losses: the ranking loss's ``head_losses`` prefixed ``loss_solo`` (with RS
    ``loss_solo_rank``, ``loss_solo_sort``, ``loss_solo_mask``). Inference is
    SOLOv2's, maskness included.
    """

    def __init__(
        self,
        *,
        ranking_loss: Optional[RankingLoss] = None,
        first_come: bool = True,
        pairing: str = "paper",
        **kwargs,
    ):
        """
        Args:
            ranking_loss: the classifier's ranking loss and the weighting of the mask loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5); any
                :class:`RankingLoss` (AP, aLRP) trains the head through its ``head_losses``.
            first_come: must be True (one quality per positive entry).
            pairing: ``"paper"`` (each positive's own quality and score) or ``"released"`` (the
                released code's mismatched orders, to reproduce its numbers); see above.
            kwargs: the arguments of :class:`SOLOv2`; its focal-loss and mask-weight options do
                not apply.
        """
        if not first_come:
            raise ValueError("RS-SOLOv2 needs first_come=True: one mask quality per positive cell")
        if pairing not in PAIRINGS:
            allowed = " or ".join(repr(p) for p in PAIRINGS)
            raise ValueError(f"RS-SOLOv2 pairing={pairing!r}: must be {allowed}")
        super().__init__(first_come=True, **kwargs)
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss
        self.pairing = pairing

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        """RS over all cells x classes with Dice qualities, and the balanced score-weighted Dice,
        qualities and weights paired with the positives as ``pairing`` says.

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
        # written by index: each quality lands on its own cell's entry ("paper")
        quality = (1.0 - dice.detach()).clamp(min=MIN_POSITIVE_QUALITY, max=1.0)
        weights = logits[pos_img, pos_cell].detach().sigmoid().amax(dim=1)
        if self.pairing == "released":
            quality, weights = self._released_pairing(logits, targets, quality, weights)
        positives = (pos_img, pos_cell, targets.labels[pos_img, pos_cell])
        rs_targets = ranking_targets(logits, positives, quality)
        put_mean_loss_scalar("solo/dice_loss", dice)  # unweighted: loss_solo_mask is balanced
        losses = self.ranking_loss.head_losses(
            logits, rs_targets, dice, weights, prefix="loss_solo", loc_name="mask"
        )
        put_ranking_loss_scalars(self.ranking_loss, "solo")
        return losses

    def _released_pairing(
        self, logits: Tensor, targets: SOLOv2Targets, quality: Tensor, weights: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """The qualities and weights of the positives re-paired as the released code pairs them.

        Args:
            logits: (N, C, K) category logits (only the shape is read).
            targets: the batch's targets; quality, weights: (P,) of each positive's own mask and
                cell, in the order of ``targets.pos_*``.
        Returns:
            (P,) quality (what each positive's category entry receives) and (P,) weights (what
            each positive's Dice loss is weighted by).
        """
        raster, grid = released_orders(
            targets.pos_img,
            targets.pos_cell,
            targets.pos_gt,
            self.num_grids,
            logits.shape[0],
            targets.gt_masks.shape[0],
        )
        released_quality = torch.empty_like(quality)
        released_quality[raster] = quality[grid]
        released_weights = torch.empty_like(weights)
        released_weights[grid] = weights[raster]
        return released_quality, released_weights
