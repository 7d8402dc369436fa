"""RS-SOLOv2 taken apart: which of its two changes to SOLOv2's losses costs AP on the tiny pair.

RS-SOLOv2 changes two things against the stock SOLOv2: (1) the classifier is trained with RS, each
positive cell's target being the soft Dice of its own predicted mask, and (2) the mask loss is the
Dice loss averaged with the cells' scores as weights and rescaled to the value of rank + sort,
instead of the plain mean x 3. The classes below swap one of them back. Each logs the plain mean
Dice loss of the positives as ``solo/mask_dice`` (RS's logged mask loss is rescaled, so it does
not show how good the masks are). Select one from the command line (docs/benchmarks.md, "RS-SOLOv2
behind, investigated")::

    PYTHONPATH=benchmarks python train_net.py \
        --config-file configs/quick_schedules/rs_solov2_tiny.py train.seed=0 train.device=cpu \
        model._target_=ablate_rs_solov2.RSClassifierStockMaskLoss
    # and, for ranking without sorting, also
        model.ranking_loss._target_=ablate_rs_solov2.RankSortBinaryTargets

These are measurement tools, not models we recommend.
"""

from typing import Dict, Tuple

from torch import Tensor

from detectron2.utils.events import get_event_storage

from rs_detectron2.losses import RankSortLoss, dice_loss
from rs_detectron2.modeling.solov2 import DICE_EPS, RSSOLOv2, SOLOv2Targets

__all__ = [
    "RSLoggingDice",
    "RSMaskLossTimes3",
    "RSClassifierStockMaskLoss",
    "RankSortBinaryTargets",
]

STOCK_MASK_WEIGHT = 3.0  # SOLOv2's Dice weight


def positive_dice(mask_logits: Tensor, targets: SOLOv2Targets) -> Tensor:
    """(P,) Dice loss of each positive's predicted mask with its own ground truth."""
    return dice_loss(mask_logits.float().sigmoid(), targets.gt_masks[targets.pos_gt], eps=DICE_EPS)


def log_mean_dice(dice: Tensor) -> None:
    """Put the positives' mean Dice loss (0 without positives) as ``solo/mask_dice``."""
    value = float(dice.detach().mean()) if len(dice) else 0.0
    get_event_storage().put_scalar("solo/mask_dice", value)


class RSLoggingDice(RSSOLOv2):
    """RS-SOLOv2 unchanged; logs ``solo/mask_dice``."""

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        losses = super().losses(logits, mask_logits, targets)
        log_mean_dice(positive_dice(mask_logits, targets))
        return losses


class RSMaskLossTimes3(RSLoggingDice):
    """RS-SOLOv2 whose balanced, score-weighted mask loss is multiplied by 3: does the size of the
    mask loss matter?"""

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        losses = super().losses(logits, mask_logits, targets)
        losses["loss_solo_mask"] = losses["loss_solo_mask"] * STOCK_MASK_WEIGHT
        return losses


class RSClassifierStockMaskLoss(RSSOLOv2):
    """RS-SOLOv2's classifier (RS with Dice targets), SOLOv2's mask loss (mean Dice x 3); logs
    ``solo/mask_dice``."""

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        losses = super().losses(logits, mask_logits, targets)
        dice = positive_dice(mask_logits, targets)
        log_mean_dice(dice)
        losses["loss_solo_mask"] = dice.sum() / max(len(dice), 1) * STOCK_MASK_WEIGHT
        return losses


class RankSortBinaryTargets(RankSortLoss):
    """RS Loss that sees every positive's target as 1: it ranks positives above negatives and has
    nothing to sort them by. With :class:`RSClassifierStockMaskLoss`, it asks whether RS-SOLOv2's
    Dice targets are what costs AP."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tuple[Tensor, Tensor]:
        return super().forward(logits, (targets > 0).to(targets.dtype))
