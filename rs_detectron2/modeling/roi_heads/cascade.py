"""Cascade R-CNN whose later stages train on the exact ground-truth boxes, as mmdetection's."""

from typing import List

import torch

from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

__all__ = ["GT_PROPOSAL_FIELD", "GTProposalCascadeROIHeads"]

#: per-proposal bool field: the proposal is a ground-truth box added to the proposals
GT_PROPOSAL_FIELD = "is_gt_proposal"

_GT_MODES = ("every_stage", "first")


def _flagged(instances: Instances, value: bool) -> Instances:
    """A shallow copy of ``instances`` with :data:`GT_PROPOSAL_FIELD` set to ``value``."""
    out = Instances(instances.image_size, **instances.get_fields())
    boxes = instances.proposal_boxes if instances.has("proposal_boxes") else instances.gt_boxes
    out.set(GT_PROPOSAL_FIELD, torch.full((len(instances),), value, device=boxes.device))
    return out


@ROI_HEADS_REGISTRY.register()
class GTProposalCascadeROIHeads(CascadeROIHeads):
    """:class:`CascadeROIHeads` with a choice of how the ground-truth boxes enter the later
    stages in training:

    - ``add_gt_as_proposals="every_stage"`` (mmdetection's Cascade R-CNN, the RS paper's code):
      every stage trains on the previous stage's refined proposals *without* the refined
      ground-truth proposals, plus the exact ground-truth boxes added again. Refined boxes that
      became empty are kept (they are negatives), as mmdetection keeps them.
    - ``"first"`` (Detectron2): the ground truth is added before the first stage only; the later
      stages train on all refined boxes, the refined ground truths included, without the empty
      ones.

    Ground-truth boxes are added at all only with ``proposal_append_gt`` (the default).
    Inference is :class:`CascadeROIHeads`'s.
    """

    @configurable
    def __init__(self, *, add_gt_as_proposals: str = "every_stage", **kwargs):
        """
        Args:
            add_gt_as_proposals: "every_stage" (the authors') or "first" (Detectron2).
            kwargs: the arguments of :class:`CascadeROIHeads`.
        """
        super().__init__(**kwargs)
        if add_gt_as_proposals not in _GT_MODES:
            raise ValueError(f"add_gt_as_proposals must be one of {_GT_MODES}")
        self.add_gt_as_proposals = add_gt_as_proposals

    @classmethod
    def from_config(cls, cfg, input_shape):
        """yacs: :class:`CascadeROIHeads`'s keys and ``MODEL.RS.ROI_HEADS.ADD_GT_AS_PROPOSALS``
        (from :func:`rs_detectron2.config.add_rs_config`)."""
        ret = super().from_config(cfg, input_shape)
        ret["add_gt_as_proposals"] = cfg.MODEL.RS.ROI_HEADS.ADD_GT_AS_PROPOSALS
        return ret

    def _every_stage(self) -> bool:
        return self.training and self.add_gt_as_proposals == "every_stage"

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        """:meth:`ROIHeads.label_and_sample_proposals`; with "every_stage" each returned proposal
        also says whether it is a ground-truth box (field :data:`GT_PROPOSAL_FIELD`)."""
        if not self._every_stage():
            return super().label_and_sample_proposals(proposals, targets)
        # the added ground-truth proposals take the field from the targets' copies
        return super().label_and_sample_proposals(
            [_flagged(p, False) for p in proposals], [_flagged(t, True) for t in targets]
        )

    def _next_stage_proposals(
        self, proposals: List[Instances], boxes: List[torch.Tensor], targets: List[Instances]
    ) -> List[Instances]:
        """The training proposals of the next stage ("every_stage").

        Args:
            proposals: the current stage's per-image proposals, with :data:`GT_PROPOSAL_FIELD`.
            boxes: their per-image (R_i, 4) refined boxes.
            targets: per-image ground truth.
        Returns:
            per image: the refined boxes of the proposals that are not ground truths, clipped to
            the image, then the ground-truth boxes (if ``proposal_append_gt``).
        """
        out = []
        for props, boxes_i, targets_i in zip(proposals, boxes, targets, strict=True):
            refined = Boxes(boxes_i.detach()[~props.get(GT_PROPOSAL_FIELD)])
            refined.clip(props.image_size)
            parts = [Instances(props.image_size, proposal_boxes=refined)]
            if self.proposal_append_gt:
                parts.append(Instances(props.image_size, proposal_boxes=targets_i.gt_boxes))
            out.append(Instances.cat([_flagged(p, i > 0) for i, p in enumerate(parts)]))
        return out

    def _forward_box(self, features, proposals, targets=None):
        """:meth:`CascadeROIHeads._forward_box`; in training with "every_stage", the later stages'
        proposals come from :meth:`_next_stage_proposals`. Returns the stages' losses (suffixed
        ``_stage{k}``) in training, the detections at test time."""
        if not self._every_stage():
            return super()._forward_box(features, proposals, targets)
        features = [features[f] for f in self.box_in_features]
        head_outputs = []  # (predictor, predictions, proposals) per stage
        prev_pred_boxes = None
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                proposals = self._next_stage_proposals(proposals, prev_pred_boxes, targets)
                proposals = self._match_and_label_boxes(proposals, stage, targets)
            predictions = self._run_stage(features, proposals, stage)
            prev_pred_boxes = self.box_predictor[stage].predict_boxes(predictions, proposals)
            head_outputs.append((self.box_predictor[stage], predictions, proposals))
        losses = {}
        storage = get_event_storage()
        for stage, (predictor, predictions, stage_proposals) in enumerate(head_outputs):
            with storage.name_scope(f"stage{stage}"):
                stage_losses = predictor.losses(predictions, stage_proposals)
            losses.update({f"{k}_stage{stage}": v for k, v in stage_losses.items()})
        return losses
