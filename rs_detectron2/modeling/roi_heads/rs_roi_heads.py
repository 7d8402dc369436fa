"""ROI heads of RS-R-CNN: mask-RoI cap and mask balancing (standard), logit averaging (cascade)."""

from typing import List

import torch

from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Instances

from ..matcher import MinIoULowQualityMatcher
from .cascade import GTProposalCascadeROIHeads
from .rs_fast_rcnn import RSFastRCNNOutputLayers
from .rs_mask_head import BOX_SCORE_FIELD

__all__ = ["RSStandardROIHeads", "RSCascadeROIHeads", "cap_instances"]


def cap_instances(instances: List[Instances], max_total: int) -> List[Instances]:
    """Keep at most ``max_total`` instances over the whole batch, drawn uniformly at random.

    Args:
        instances: per-image Instances.
        max_total: cap over all images together (< 0: no cap).
    Returns:
        per-image Instances, each a subset of the input in its original order.
    """
    sizes = [len(x) for x in instances]
    total = sum(sizes)
    if max_total < 0 or total <= max_total:
        return instances
    device = instances[0].proposal_boxes.device if instances[0].has("proposal_boxes") else "cpu"
    keep = torch.zeros(total, dtype=torch.bool, device=device)
    keep[torch.randperm(total, device=device)[:max_total]] = True
    return [x[k] for x, k in zip(instances, keep.split(sizes), strict=True)]


@ROI_HEADS_REGISTRY.register()
class RSStandardROIHeads(StandardROIHeads):
    """StandardROIHeads for RS-Faster / RS-Mask R-CNN.

    - Each training RoI's detached max-class box score is attached to it (field
      ``rs_box_scores``) before the mask head runs: it weights the RoI's mask loss.
    - At most ``max_masks_per_batch`` random foreground RoIs (over the batch) train the mask head
      (200 in the paper).
    - The mask loss is weighted by the box predictor's ranking loss
      (:meth:`~rs_detectron2.losses.RankingLoss.balance_auxiliary`; RS rescales it every iteration
      so that its value equals ``loss_rcnn_rank + loss_rcnn_sort``).
    Sampling is controlled by the usual arguments: RS configs set ``batch_size_per_image`` so
    large that every proposal is used. The box predictor must be an
    :class:`RSFastRCNNOutputLayers`.
    """

    @configurable
    def __init__(self, *, max_masks_per_batch: int = 200, **kwargs):
        super().__init__(**kwargs)
        if self.train_on_pred_boxes:
            raise ValueError("RSStandardROIHeads does not support train_on_pred_boxes")
        self.max_masks_per_batch = int(max_masks_per_batch)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """yacs: :class:`StandardROIHeads`'s keys with an :class:`RSFastRCNNOutputLayers` and the
        settings of ``cfg.MODEL.RS.ROI_HEADS`` (no sampling, the R-CNN matcher's low-quality
        matches, the mask-RoI cap); the mask head is ``MODEL.ROI_MASK_HEAD.NAME``'s."""
        ret = super().from_config(cfg, input_shape)
        rs = cfg.MODEL.RS.ROI_HEADS
        ret.update(
            box_predictor=RSFastRCNNOutputLayers(cfg, ret["box_head"].output_shape),
            batch_size_per_image=rs.BATCH_SIZE_PER_IMAGE,
            proposal_matcher=MinIoULowQualityMatcher(
                cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS,
                cfg.MODEL.ROI_HEADS.IOU_LABELS,
                allow_low_quality_matches=rs.LOW_QUALITY_MATCHES,
                min_low_quality_iou=rs.MIN_LOW_QUALITY_IOU,
            ),
            max_masks_per_batch=rs.MAX_MASKS_PER_BATCH,
        )
        return ret

    def forward(self, images, features, proposals, targets=None):
        if not self.training:
            return super().forward(images, features, proposals, targets)
        if not targets:
            raise ValueError("RSStandardROIHeads needs the targets during training")
        proposals = self.label_and_sample_proposals(proposals, targets)
        box_losses = self._forward_box(features, proposals)
        losses = dict(box_losses)
        for name, loss in self._forward_mask(features, proposals).items():
            losses[name] = self.box_predictor.ranking_loss.balance_auxiliary(loss, box_losses)
        losses.update(self._forward_keypoint(features, proposals))
        return proposals, losses

    def _forward_box(self, features, proposals):
        if not self.training:
            return super()._forward_box(features, proposals)
        features = [features[f] for f in self.box_in_features]
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(box_features))
        scores = self.box_predictor.box_scores(predictions)
        for image_proposals, image_scores in zip(
            proposals, scores.split([len(p) for p in proposals]), strict=True
        ):
            image_proposals.set(BOX_SCORE_FIELD, image_scores)
        return self.box_predictor.losses(predictions, proposals)

    def _forward_mask(self, features, instances):
        if self.training and self.mask_on:
            foreground, _ = select_foreground_proposals(instances, self.num_classes)
            instances = cap_instances(foreground, self.max_masks_per_batch)
        return super()._forward_mask(features, instances)


@ROI_HEADS_REGISTRY.register()
class RSCascadeROIHeads(GTProposalCascadeROIHeads):
    """CascadeROIHeads for RS-Cascade R-CNN (Oksuz et al. 2021, Sec. 5).

    - In training, every stage gets the exact ground-truth boxes as proposals and not the refined
      ones (``add_gt_as_proposals="every_stage"``, the authors' code; ``"first"``: Detectron2),
      see :class:`GTProposalCascadeROIHeads`.
    - The stages' box features are not gradient-scaled by 1 / num_stages (Detectron2 does this;
      the authors' mmdet code does not), and stage losses are summed with weight 1.
    - At test time the stages' classification *logits* are averaged before the sigmoid (Detectron2
      averages probabilities); boxes come from the last stage.
    Each stage's predictor is an :class:`RSFastRCNNOutputLayers`, so each stage self-balances.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        """yacs: :class:`GTProposalCascadeROIHeads`'s keys with one
        :class:`RSFastRCNNOutputLayers` per stage, all with ``MODEL.RS.BBOX_REG_WEIGHTS`` (not
        ``MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS``), and no sampling."""
        ret = super().from_config(cfg, input_shape)
        ret.update(
            box_predictors=[
                RSFastRCNNOutputLayers(cfg, head.output_shape) for head in ret["box_heads"]
            ],
            batch_size_per_image=cfg.MODEL.RS.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        )
        return ret

    def _run_stage(self, features, proposals, stage):
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        box_features = self.box_head[stage](box_features)
        return self.box_predictor[stage](box_features)

    def _forward_box(self, features, proposals, targets=None):
        if self.training:
            return super()._forward_box(features, proposals, targets)
        features = [features[f] for f in self.box_in_features]
        image_sizes = [x.image_size for x in proposals]
        logit_sum = None
        for stage in range(self.num_cascade_stages):
            predictions = self._run_stage(features, proposals, stage)
            boxes = self.box_predictor[stage].predict_boxes(predictions, proposals)
            logit_sum = predictions[0] if logit_sum is None else logit_sum + predictions[0]
            if stage + 1 < self.num_cascade_stages:
                proposals = self._create_proposals_from_boxes(boxes, image_sizes)
        predictor = self.box_predictor[-1]
        mean_logits = logit_sum / self.num_cascade_stages
        scores = predictor.predict_probs((mean_logits, predictions[1]), proposals)
        instances, _ = fast_rcnn_inference(
            boxes,
            scores,
            image_sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        return instances
