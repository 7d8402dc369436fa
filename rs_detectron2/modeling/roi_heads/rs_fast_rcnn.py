"""RS box predictor: a sigmoid K-way classifier (no background logit) trained with RS loss."""

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ...losses import RankingLoss, RankSortLoss, giou_loss, ranking_targets
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..quality import regression_quality
from ..ranking_loss import build_ranking_loss

__all__ = ["RSFastRCNNOutputLayers"]


class RSFastRCNNOutputLayers(FastRCNNOutputLayers):
    """Fast R-CNN output layers of RS-R-CNN (Oksuz et al. 2021, Sec. 5): ``cls_score`` has K
    outputs (sigmoid per class), the classifier is trained with a ranking loss over all RoIs x
    classes of the batch, with quality = IoU of the RoI's regressed box (GT class) with its ground
    truth, and the box branch with GIoU on decoded boxes, weighted by the detached max-class score
    and by the ranking loss (RS: balanced to rank + sort).

    At test time, scores are sigmoid(logits) with a zero background column appended, so the
    standard ``fast_rcnn_inference`` applies.
    """

    #: prefix of the loss names (``loss_rcnn_rank``, ``loss_rcnn_sort``, ``loss_rcnn_box`` with RS)
    loss_prefix = "loss_rcnn"

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        ranking_loss: Optional[RankingLoss] = None,
        test_score_thresh: float = 0.4,
        **kwargs,
    ):
        """
        Args:
            input_shape, kwargs: as :class:`FastRCNNOutputLayers`. ``box_reg_loss_type``,
                ``smooth_l1_beta``, ``loss_weight``, ``use_sigmoid_ce`` and the federated-loss
                options do not apply.
            ranking_loss: the ranking loss of the classifier and the weighting of the box loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5).
            test_score_thresh: 0.40 in the paper's COCO configs (0.05 gives 0.1-0.3 AP more).
        """
        super().__init__(input_shape, test_score_thresh=test_score_thresh, **kwargs)
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss
        self.cls_score = nn.Linear(self.cls_score.in_features, self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """yacs: :class:`FastRCNNOutputLayers`'s keys, with ``cfg.MODEL.RS``'s ranking loss, box
        coder and test score threshold. The RS ROI heads build it (Detectron2 has no registry of
        box predictors)."""
        ret = super().from_config(cfg, input_shape)
        ret.pop("loss_weight")  # of the stock losses
        ret.update(
            ranking_loss=build_ranking_loss(cfg),
            box2box_transform=Box2BoxTransform(weights=cfg.MODEL.RS.BBOX_REG_WEIGHTS),
            test_score_thresh=cfg.MODEL.RS.ROI_HEADS.SCORE_THRESH_TEST,
        )
        return ret

    @staticmethod
    def box_scores(predictions: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(R,) detached max-class sigmoid score of each RoI: the weight of its box and mask
        losses."""
        scores = predictions[0].detach()
        if scores.shape[1] == 0:
            return scores.new_zeros(len(scores))
        return scores.sigmoid().amax(dim=1)

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: ``(scores (R, K), deltas (R, K*4) or (R, 4))`` from :meth:`forward`.
            proposals: per-image proposals with ``proposal_boxes``, ``gt_classes`` (K is
                background, negative values are ignored) and ``gt_boxes``.
        Returns:
            the ranking loss's :meth:`~rs_detectron2.losses.RankingLoss.head_losses`, prefixed
            ``loss_rcnn``.
        """
        scores, deltas = predictions
        num_rois, num_classes = scores.shape
        if len(proposals):
            gt_classes = cat([p.gt_classes for p in proposals], dim=0)
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            gt_boxes = cat(
                [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
            )
        else:
            gt_classes = torch.zeros(0, dtype=torch.long, device=scores.device)
            proposal_boxes = gt_boxes = scores.new_zeros((0, 4))

        box_scores = self.box_scores(predictions)

        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < num_classes)).squeeze(1)
        fg_classes = gt_classes[fg]
        if deltas.shape[1] == 4:  # class-agnostic regression
            fg_deltas = deltas[fg]
        else:
            fg_deltas = deltas.view(num_rois, num_classes, 4)[fg, fg_classes]
        pred_boxes = self.box2box_transform.apply_deltas(fg_deltas, proposal_boxes[fg])

        # ignored RoIs (gt_classes < 0) come only with a 3-label matcher
        quality = regression_quality(pred_boxes, gt_boxes[fg])
        targets = ranking_targets(scores, (fg, fg_classes), quality, gt_classes < 0)

        storage = get_event_storage()
        storage.put_scalar("rs_rcnn/num_fg_rois", fg.numel() / max(len(proposals), 1))

        giou = giou_loss(pred_boxes.float(), gt_boxes[fg].float())
        # unweighted; Cascade R-CNN logs each stage's under its name scope (stage{k}/rs_rcnn/...)
        put_mean_loss_scalar("rs_rcnn/giou_loss", giou)
        losses = self.ranking_loss.head_losses(
            scores, targets, giou, box_scores[fg], prefix=self.loss_prefix
        )
        put_ranking_loss_scalars(self.ranking_loss, "rs_rcnn")
        return losses

    def predict_probs(
        self, predictions: Tuple[torch.Tensor, torch.Tensor], proposals: List[Instances]
    ):
        """Per-image (R_i, K + 1) scores: sigmoid of the K logits and a zero background column."""
        scores, _ = predictions
        probs = F.pad(scores.sigmoid(), (0, 1), value=0.0)
        return probs.split([len(p) for p in proposals], dim=0)
