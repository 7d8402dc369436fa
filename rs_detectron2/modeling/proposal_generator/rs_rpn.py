"""RS-RPN: Detectron2's RPN trained with Rank & Sort loss on objectness (Oksuz et al. 2021)."""

from typing import Dict, List, Optional, Tuple

import torch

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ...losses import RankingLoss, RankSortLoss, giou_loss, ranking_targets
from ..anchor_validity import valid_anchor_mask
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..matcher import MinIoULowQualityMatcher
from ..quality import regression_quality
from ..ranking_loss import build_ranking_loss

__all__ = ["RSRPN"]


@PROPOSAL_GENERATOR_REGISTRY.register()
class RSRPN(RPN):
    """RPN whose objectness is trained with a ranking loss over every non-ignored anchor of every
    image in the batch (no sampling), with quality = IoU of the regressed anchor with its ground
    truth, and whose box loss is weighted by that ranking loss (RS: score-weighted GIoU balanced to
    rank + sort). Every loss is multiplied by ``loss_weight`` (0.2 in the paper). With
    ``ignore_padding_anchors`` (the authors' code), the anchors on an image's batch padding are
    left out of matching and ignored (:func:`~rs_detectron2.modeling.anchor_validity.
    valid_anchor_mask`). Proposal generation is unchanged.

    Losses with RS: ``loss_rpn_rank``, ``loss_rpn_sort``, ``loss_rpn_box``.
    """

    @configurable
    def __init__(
        self,
        *,
        ranking_loss: Optional[RankingLoss] = None,
        loss_weight: float = 0.2,
        ignore_padding_anchors: bool = True,
        **kwargs,
    ):
        """
        Args:
            ranking_loss: the ranking loss of objectness and the weighting of the box loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5).
            loss_weight: multiplier of every RPN loss (the paper's RPN head weight, 0.2).
            ignore_padding_anchors: anchors on the batch padding are ignored, not matched
                (the authors' code); False: Detectron2 labels them.
            kwargs: the arguments of :class:`detectron2.modeling.proposal_generator.RPN`;
                ``batch_size_per_image`` and ``positive_fraction`` are unused (no sampling).
        """
        super().__init__(**kwargs)
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss
        self.loss_weight = float(loss_weight)
        self.ignore_padding_anchors = bool(ignore_padding_anchors)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """yacs: :class:`RPN`'s keys, with the RS settings of ``cfg.MODEL.RS`` (see
        :func:`rs_detectron2.config.add_rs_config`) for the loss, its weight, the box coder, the
        low-quality matches and the padding anchors."""
        ret = super().from_config(cfg, input_shape)
        rs = cfg.MODEL.RS
        ret.update(
            ranking_loss=build_ranking_loss(cfg),
            loss_weight=rs.RPN.LOSS_WEIGHT,  # a float: RPN's per-loss dict does not apply
            box2box_transform=Box2BoxTransform(weights=rs.BBOX_REG_WEIGHTS),
            anchor_matcher=MinIoULowQualityMatcher(
                cfg.MODEL.RPN.IOU_THRESHOLDS,
                cfg.MODEL.RPN.IOU_LABELS,
                allow_low_quality_matches=True,
                min_low_quality_iou=rs.RPN.MIN_LOW_QUALITY_IOU,
            ),
            ignore_padding_anchors=rs.IGNORE_PADDING_ANCHORS,
        )
        return ret

    def _subsample_labels(self, label):
        """RS ranks every anchor: nothing is sampled away."""
        return label

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """:meth:`RPN.label_and_sample_anchors` on each image's valid anchors only (when
        ``ignore_padding_anchors``); the others get label -1 and a zero box.

        Args:
            anchors: per-level Boxes, R anchors in total; gt_instances: per-image ground truth
                (its ``image_size`` is the image's size without batch padding).
        Returns:
            per image, (R,) labels in {-1, 0, 1} and (R, 4) matched ground-truth boxes.
        """
        if not self.ignore_padding_anchors:
            return super().label_and_sample_anchors(anchors, gt_instances)
        all_anchors = Boxes.cat(anchors)
        gen = self.anchor_generator
        gt_labels, matched_gt_boxes = [], []
        for instances in gt_instances:
            valid = valid_anchor_mask(anchors, gen.strides, gen.offset, instances.image_size)
            (labels_valid,), (boxes_valid,) = super().label_and_sample_anchors(
                [all_anchors[valid]], [instances]
            )
            labels = labels_valid.new_full((len(all_anchors),), -1)
            labels[valid] = labels_valid
            boxes = boxes_valid.new_zeros((len(all_anchors), 4))
            boxes[valid] = boxes_valid
            gt_labels.append(labels)
            matched_gt_boxes.append(boxes)
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Same inputs as :meth:`RPN.losses`; returns the three RS-RPN losses."""
        labels = torch.stack(gt_labels)  # (N, A): -1 ignore, 0 negative, 1 positive
        logits = cat(pred_objectness_logits, dim=1)  # (N, A)
        deltas = cat(pred_anchor_deltas, dim=1)  # (N, A, 4)
        anchors = Boxes.cat(anchors).tensor  # (A, 4)
        pos_img, pos_anchor = torch.nonzero(labels == 1, as_tuple=True)

        pred_boxes = self.box2box_transform.apply_deltas(
            deltas[pos_img, pos_anchor], anchors[pos_anchor]
        )
        matched_gt = torch.stack(gt_boxes)[pos_img, pos_anchor]
        quality = regression_quality(pred_boxes, matched_gt)
        targets = ranking_targets(logits, (pos_img, pos_anchor), quality, labels < 0)

        num_images = len(gt_labels)
        storage = get_event_storage()
        storage.put_scalar("rpn/num_pos_anchors", pos_img.numel() / num_images)
        storage.put_scalar("rpn/num_neg_anchors", (labels == 0).sum().item() / num_images)

        giou = giou_loss(pred_boxes.float(), matched_gt.float())
        put_mean_loss_scalar("rpn/giou_loss", giou)  # unweighted: loss_rpn_box is balanced
        losses = self.ranking_loss.head_losses(
            logits,
            targets,
            giou,
            logits[pos_img, pos_anchor].detach().sigmoid(),
            prefix="loss_rpn",
        )
        put_ranking_loss_scalars(self.ranking_loss, "rpn")
        return {k: v * self.loss_weight for k, v in losses.items()}
