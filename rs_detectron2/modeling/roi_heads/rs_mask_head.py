"""RS mask head: score-weighted Dice loss (spec 3.4); its balancing happens in the ROI heads."""

from typing import List

import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead
from detectron2.structures import Instances

from ...losses import dice_loss, weighted_mean
from .rs_fast_rcnn import BOX_SCORE_FIELD

__all__ = ["RSMaskRCNNConvUpsampleHead", "rs_mask_loss"]


def _mask_targets(instances: List[Instances], side: int, device) -> torch.Tensor:
    """(R, side, side) float GT masks of the foreground proposals, cropped to each proposal box."""
    crops = [
        inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, side).to(device)
        for inst in instances
        if len(inst)
    ]
    return cat(crops, dim=0).to(torch.float32)


def rs_mask_loss(mask_logits: torch.Tensor, instances: List[Instances]) -> torch.Tensor:
    """Dice loss of the GT-class masks, weighted by each RoI's detached max-class box score.

    Args:
        mask_logits: (R, C, M, M) mask logits, C = K (class-specific) or 1 (class-agnostic).
        instances: per-image foreground proposals (``proposal_boxes``, ``gt_classes``,
            ``gt_masks``), R in total. Weights come from the field ``rs_box_scores`` set by
            :class:`RSFastRCNNOutputLayers`; without it every RoI weighs 1.
    Returns:
        0-dim tensor: sum(w * dice) / sum(w), not yet balanced; 0 (attached) if R == 0.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    if mask_logits.shape[1] == 1:
        logits = mask_logits[:, 0]
    else:
        classes = cat([inst.gt_classes for inst in instances], dim=0)
        logits = mask_logits[torch.arange(len(classes), device=classes.device), classes]
    targets = _mask_targets(instances, mask_logits.shape[-1], mask_logits.device)
    if all(inst.has(BOX_SCORE_FIELD) for inst in instances):
        weights = cat([inst.get(BOX_SCORE_FIELD) for inst in instances], dim=0)
    else:
        weights = torch.ones(len(logits), device=logits.device)
    return weighted_mean(dice_loss(logits.float().sigmoid(), targets), weights.float())


class RSMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    """Mask R-CNN conv-upsample head whose training loss is :func:`rs_mask_loss`, reported as
    ``loss_rcnn_mask``. :class:`RSStandardROIHeads` rescales it to the box stage's rank + sort.
    Inference is unchanged.
    """

    def forward(self, x, instances: List[Instances]):
        if not self.training:
            return super().forward(x, instances)
        return {"loss_rcnn_mask": rs_mask_loss(self.layers(x), instances) * self.loss_weight}
