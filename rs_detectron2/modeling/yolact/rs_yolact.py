"""RS-YOLACT: YOLACT trained with a ranking loss (RS by default; Oksuz et al., "Rank & Sort Loss
for Object Detection and Instance Segmentation", ICCV 2021, Sec. 6.2)."""

from typing import Dict, Optional

from torch import Tensor

from detectron2.utils.events import get_event_storage

from ...losses import (
    RankingLoss,
    RankSortLoss,
    dice_loss,
    giou_loss,
    ranking_targets,
    weighted_mean,
)
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..quality import regression_quality
from .assembly import relative_boxes
from .meta_arch import YOLACT, YOLACTBatch

__all__ = ["RSYOLACT"]


class RSYOLACT(YOLACT):
    """:class:`YOLACT` with sigmoid classification and a ranking loss in place of OHEM.

    Training: one ranking-loss call over all images x anchors x classes of the batch (no
    sampling, no background class). A positive anchor's GT-class entry has as target the IoU of
    its regressed box with its GT (box IoU, not mask IoU), its other classes are negatives, every
    class of an ignored anchor is ignored. The box loss is GIoU on the decoded boxes and the mask
    loss ``1 - Dice`` of every positive's mask cropped by its GT box against its (uncropped) GT
    mask at the prototype resolution, both averaged with the positive's detached max-class score
    as weight and weighted by the ranking loss (RS: rescaled to rank + sort). No semantic head,
    no cap on the number of masks. Losses with RS: ``loss_dense_rank``, ``loss_dense_sort``,
    ``loss_dense_box``, ``loss_dense_mask``.

    Inference: as :class:`YOLACT`, with sigmoid scores.
    """

    background_logit = False

    def __init__(self, *, ranking_loss: Optional[RankingLoss] = None, **kwargs):
        """
        Args:
            ranking_loss: the ranking loss of the classifier and the weighting of the box and
                mask losses (default: :class:`RankSortLoss` with the paper's delta 0.5).
            kwargs: the arguments of :class:`YOLACT`; ``semantic_head`` must be None and the
                stock loss options do not apply.
        """
        if kwargs.get("semantic_head") is not None:
            raise ValueError("RSYOLACT has no semantic-segmentation head (semantic_head=None)")
        super().__init__(**kwargs)
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss

    def class_scores(self, logits: Tensor) -> Tensor:
        """(..., K) logits -> (..., K) sigmoid scores."""
        return logits.float().sigmoid()

    def losses(self, batch: YOLACTBatch) -> Dict[str, Tensor]:
        """The ranking loss, the balanced score-weighted GIoU and Dice losses of a batch.

        Args:
            batch: as for :meth:`YOLACT.losses` (``logits`` (N, R, K)).
        Returns:
            the ranking loss's ``head_losses`` prefixed ``loss_dense`` and ``loss_dense_mask``.
        """
        labels, pos = batch.labels, batch.pos
        logits = batch.logits.float()
        pred_boxes = self.box2box_transform.apply_deltas(
            batch.deltas[pos.image, pos.anchor].float(), batch.anchors[pos.anchor]
        )
        gt_boxes = pos.gt_boxes.float()
        quality = regression_quality(pred_boxes, gt_boxes)
        targets = ranking_targets(logits, (pos.image, pos.anchor, pos.classes), quality, labels < 0)
        weights = logits[pos.image, pos.anchor].detach().sigmoid().amax(dim=1)

        storage = get_event_storage()
        storage.put_scalar("num_ignored_anchors", (labels < 0).sum().item() / labels.shape[0])
        giou = giou_loss(pred_boxes, gt_boxes)
        put_mean_loss_scalar("dense/giou_loss", giou)  # unweighted: loss_dense_box is balanced
        losses = self.ranking_loss.head_losses(logits, targets, giou, weights, prefix="loss_dense")
        put_ranking_loss_scalars(self.ranking_loss, "dense")

        boxes_rel = relative_boxes(gt_boxes, batch.input_size)
        masks = self.positive_masks(batch.protos, batch.coeffs, pos, boxes_rel)
        dice = dice_loss(masks.clamp(0, 1), batch.mask_targets[pos.gt_index])
        put_mean_loss_scalar("dense/dice_loss", dice)  # unweighted: loss_dense_mask is balanced
        # without positives the protonet still takes part in the graph (distributed training)
        loss_mask = weighted_mean(dice, weights) + 0.0 * batch.protos.sum()
        losses["loss_dense_mask"] = self.ranking_loss.balance_auxiliary(loss_mask, losses)
        return losses
