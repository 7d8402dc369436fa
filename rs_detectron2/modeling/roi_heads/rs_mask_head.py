"""RS mask head: score-weighted Dice loss (Oksuz et al. 2021, Sec. 5); balanced in the ROI heads."""

from typing import List, Optional

import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead
from detectron2.structures import Instances

from ...losses import dice_loss, weighted_mean
from ..events import put_mean_loss_scalar

__all__ = ["BOX_SCORE_FIELD", "RSMaskRCNNConvUpsampleHead", "rs_mask_loss"]

# Field of the training proposals holding each RoI's detached max-class box score, the weight of
# its mask loss. RSStandardROIHeads sets it before the mask head runs.
BOX_SCORE_FIELD = "rs_box_scores"


def _mask_targets(instances: List[Instances], side: int, device) -> torch.Tensor:
    """(R, side, side) float GT masks of the foreground proposals, cropped to each proposal box."""
    crops = [
        inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, side).to(device)
        for inst in instances
        if len(inst)
    ]
    return cat(crops, dim=0).to(torch.float32)


def rs_mask_loss(
    mask_logits: torch.Tensor, instances: List[Instances], *, scalar_name: Optional[str] = None
) -> torch.Tensor:
    """Dice loss of the GT-class masks, weighted by each RoI's detached max-class box score.

    Args:
        mask_logits: (R, C, M, M) mask logits, C = K (class-specific) or 1 (class-agnostic).
        instances: per-image foreground proposals (``proposal_boxes``, ``gt_classes``,
            ``gt_masks`` and the weights ``rs_box_scores``, set by :class:`RSStandardROIHeads`),
            R in total.
        scalar_name: if given (and R > 0), the plain, unweighted mean Dice loss of the R masks is
            also logged under this event-storage scalar name.
    Returns:
        0-dim tensor: sum(w * dice) / sum(w), not yet balanced; 0 (attached) if R == 0.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    if not all(inst.has(BOX_SCORE_FIELD) for inst in instances):
        raise ValueError(
            f"rs_mask_loss: the proposals lack the box scores ({BOX_SCORE_FIELD!r}) that weight "
            "the mask loss; use RSMaskRCNNConvUpsampleHead inside RSStandardROIHeads"
        )
    if mask_logits.shape[1] == 1:
        logits = mask_logits[:, 0]
    else:
        classes = cat([inst.gt_classes for inst in instances], dim=0)
        logits = mask_logits[torch.arange(len(classes), device=classes.device), classes]
    targets = _mask_targets(instances, mask_logits.shape[-1], mask_logits.device)
    weights = cat([inst.get(BOX_SCORE_FIELD) for inst in instances], dim=0)
    dice = dice_loss(logits.float().sigmoid(), targets)
    if scalar_name is not None:
        put_mean_loss_scalar(scalar_name, dice)
    return weighted_mean(dice, weights.float())


@ROI_MASK_HEAD_REGISTRY.register()
class RSMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    """Mask R-CNN conv-upsample head whose training loss is :func:`rs_mask_loss`, reported as
    ``loss_rcnn_mask``. :class:`RSStandardROIHeads` rescales it to the box stage's rank + sort, so
    the head also logs the plain mean Dice loss of its RoIs as the scalar ``rs_rcnn/dice_loss``.
    Inference is unchanged.
    """

    def forward(self, x, instances: List[Instances]):
        if not self.training:
            return super().forward(x, instances)
        # the unweighted mean Dice loss is logged: loss_rcnn_mask is balanced to rank + sort
        loss = rs_mask_loss(self.layers(x), instances, scalar_name="rs_rcnn/dice_loss")
        return {"loss_rcnn_mask": loss * self.loss_weight}
