"""RS one-stage detectors: RetinaNet-style dense heads trained with RS loss (Oksuz et al. 2021)."""

from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from ...config.defaults import ranking_loss_from_config
from ...losses import RankingLoss, RankSortLoss, giou_loss, ranking_targets
from ..anchor_validity import valid_anchor_mask
from ..assigners import ATSSAssigner, IoUAssigner, PAAAssigner
from ..events import put_ranking_loss_scalars
from ..quality import regression_quality
from .dense_head import ScaledRetinaNetHead
from .score_voting import score_voting

__all__ = ["RSRetinaNet"]


@META_ARCH_REGISTRY.register()
class RSRetinaNet(RetinaNet):
    """A RetinaNet-style dense detector trained with a ranking loss (RS by default): RS-RetinaNet,
    RS-ATSS and RS-PAA differ only in their ``assigner``, head, anchors and test settings (see
    ``configs/common/models/rs_{retinanet,atss,paa}_fpn.py``).

    Training (:meth:`losses`): one ranking-loss call over all images x anchors x classes of the
    batch (no sampling). A positive anchor's GT-class entry has as target the IoU of its regressed
    box with its GT, its other classes are negatives; every class of an ignored anchor is ignored.
    The box loss is GIoU on the decoded boxes of the positives, weighted by their detached
    max-class sigmoid score and by the ranking loss (RS: rescaled to rank + sort). Losses with RS:
    ``loss_dense_rank``, ``loss_dense_sort``, ``loss_dense_box``.

    Inference: sigmoid scores (no centerness / IoU factor), per-level candidates, per-class NMS,
    plus PAA's score voting when ``score_voting`` is on. The candidates of a level are, with
    ``candidate_selection="anchor"`` (mmdetection, the authors' code), the top
    ``test_topk_candidates`` anchors by their highest class score, then every (anchor, class) of
    those above ``test_score_thresh``; with ``"pair"`` (Detectron2's RetinaNet), the top
    ``test_topk_candidates`` (anchor, class) pairs above the threshold. With
    ``clip_boxes_before_nms`` the decoded boxes are clipped to the image before NMS and score
    voting (mmdetection); Detectron2 clips only the final detections.
    """

    @configurable
    def __init__(
        self,
        *,
        assigner: Callable,
        ranking_loss: Optional[RankingLoss] = None,
        score_voting: bool = False,
        score_voting_sigma: float = 0.025,
        candidate_selection: str = "anchor",
        clip_boxes_before_nms: bool = True,
        ignore_padding_anchors: bool = True,
        **kwargs,
    ):
        """
        Args:
            assigner: labels one image's anchors, see :mod:`rs_detectron2.modeling.assigners`
                (``IoUAssigner`` for RS-RetinaNet, ``ATSSAssigner``, ``PAAAssigner``). It replaces
                RetinaNet's ``anchor_matcher``, which must not be given.
            ranking_loss: the ranking loss of the classifier and the weighting of the box loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5).
            score_voting: PAA's score voting at test time (RS-PAA).
            score_voting_sigma: its IoU weighting width (0.025).
            candidate_selection: "anchor" (the authors') or "pair" (Detectron2), see above.
            clip_boxes_before_nms: clip candidate boxes to the image before NMS and score voting
                (the authors'); False: Detectron2's RetinaNet.
            ignore_padding_anchors: the anchors on an image's batch padding are left out of
                assignment and ignored by the loss (the authors' code,
                :func:`~rs_detectron2.modeling.anchor_validity.valid_anchor_mask`); False: they
                are assigned like the others (Detectron2), mostly as negatives.
            kwargs: the other arguments of :class:`RetinaNet`; its focal-loss and smooth-L1
                options do not apply.
        """
        super().__init__(anchor_matcher=None, **kwargs)
        self.assigner = assigner
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss
        self.score_voting = bool(score_voting)
        self.score_voting_sigma = float(score_voting_sigma)
        if candidate_selection not in ("anchor", "pair"):
            raise ValueError(
                f"candidate_selection must be 'anchor' or 'pair': {candidate_selection}"
            )
        self.candidate_selection = candidate_selection
        self.clip_boxes_before_nms = bool(clip_boxes_before_nms)
        self.ignore_padding_anchors = bool(ignore_padding_anchors)

    @classmethod
    def from_config(cls, cfg):
        """yacs: :class:`RetinaNet`'s keys (backbone, anchors, head convs and norm, test
        settings), with ``cfg.MODEL.RS``'s ranking loss and box coder, and ``MODEL.RS.DENSE``'s
        assigner (IoU with ``MODEL.RETINANET.IOU_*``, ATSS or PAA), head
        (``RetinaNetHead`` or ``ScaledRetinaNetHead``) and test-time rules."""
        ret = super().from_config(cfg)
        for key in ("anchor_matcher", "focal_loss_alpha", "focal_loss_gamma", "smooth_l1_beta"):
            ret.pop(key)
        rs, dense, retina = cfg.MODEL.RS, cfg.MODEL.RS.DENSE, cfg.MODEL.RETINANET
        heads = {"RetinaNetHead": RetinaNetHead, "ScaledRetinaNetHead": ScaledRetinaNetHead}
        assigners = {
            "IoU": lambda: IoUAssigner(retina.IOU_THRESHOLDS, retina.IOU_LABELS),
            "ATSS": lambda: ATSSAssigner(topk=dense.ATSS_TOPK),
            "PAA": lambda: PAAAssigner(
                iou_threshold=dense.PAA_IOU_THRESHOLD,
                topk=dense.PAA_TOPK,
                focal_alpha=retina.FOCAL_LOSS_ALPHA,
                focal_gamma=retina.FOCAL_LOSS_GAMMA,
            ),
        }
        for key, choices in (("HEAD", heads), ("ASSIGNER", assigners)):
            if dense[key] not in choices:
                raise ValueError(f"MODEL.RS.DENSE.{key} must be one of {sorted(choices)}")
        if dense.HEAD != "RetinaNetHead":
            shapes = ret["backbone"].output_shape()
            ret["head"] = heads[dense.HEAD](cfg, [shapes[f] for f in retina.IN_FEATURES])
        ret.update(
            assigner=assigners[dense.ASSIGNER](),
            ranking_loss=ranking_loss_from_config(cfg),
            box2box_transform=Box2BoxTransform(weights=rs.BBOX_REG_WEIGHTS),
            score_voting=dense.SCORE_VOTING,
            score_voting_sigma=dense.SCORE_VOTING_SIGMA,
            candidate_selection=dense.CANDIDATE_SELECTION,
            clip_boxes_before_nms=dense.CLIP_BOXES_BEFORE_NMS,
            ignore_padding_anchors=rs.IGNORE_PADDING_ANCHORS,
        )
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(
            anchors, gt_instances, pred_logits, pred_anchor_deltas, images.image_sizes
        )
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)

    @torch.no_grad()
    def label_anchors(
        self,
        anchors: List[Boxes],
        gt_instances: List[Instances],
        pred_logits: Optional[List[Tensor]] = None,
        pred_anchor_deltas: Optional[List[Tensor]] = None,
        image_sizes: Optional[List[Tuple[int, int]]] = None,
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Run the assigner on every image (on its valid anchors only, with
        ``ignore_padding_anchors``; the others are ignored); the outputs have the format of
        :meth:`RetinaNet.label_anchors`.

        Args:
            anchors: per-level Boxes (the same for every image).
            gt_instances: per-image ground truth.
            pred_logits, pred_anchor_deltas: per-level (N, R_l, K) / (N, R_l, 4) predictions;
                needed only by assigners with ``uses_predictions`` (PAA).
            image_sizes: per-image (h, w) without batch padding (default: the ground truth's
                ``image_size``).
        Returns:
            gt_labels: per image (R,) int64 in {-1 (ignored), 0..K-1 (class), K (background)}.
            matched_gt_boxes: per image (R, 4), the matched GT box (zeros where not positive).
        """
        num_anchors_per_level = [len(a) for a in anchors]
        level_of_anchor = torch.repeat_interleave(
            torch.arange(len(anchors), device=anchors[0].device),
            torch.tensor(num_anchors_per_level, device=anchors[0].device),
        )
        all_anchors = Boxes.cat(anchors)
        use_preds = getattr(self.assigner, "uses_predictions", False)
        if use_preds:
            logits_all = cat(pred_logits, dim=1)
            deltas_all = cat(pred_anchor_deltas, dim=1)
        if image_sizes is None:
            image_sizes = [x.image_size for x in gt_instances]
        gen = self.anchor_generator

        gt_labels, matched_gt_boxes = [], []
        for i, gt_per_image in enumerate(gt_instances):
            if self.ignore_padding_anchors:
                valid = valid_anchor_mask(anchors, gen.strides, gen.offset, image_sizes[i])
                anchors_i = all_anchors[valid]
                counts = torch.bincount(level_of_anchor[valid], minlength=len(anchors)).tolist()
            else:
                valid, anchors_i, counts = None, all_anchors, num_anchors_per_level
            extra = {}
            if use_preds:
                logits_i, deltas_i = logits_all[i], deltas_all[i]
                if valid is not None:
                    logits_i, deltas_i = logits_i[valid], deltas_i[valid]
                extra["pred_logits"] = logits_i.detach().float()
                extra["pred_boxes"] = self.box2box_transform.apply_deltas(
                    deltas_i.detach().float(), anchors_i.tensor
                )
            matched_idxs, anchor_labels = self.assigner(anchors_i, counts, gt_per_image, **extra)
            if valid is not None:  # back to all anchors, the invalid ones ignored
                matched_idxs = matched_idxs.new_zeros(len(all_anchors)).masked_scatter(
                    valid, matched_idxs
                )
                anchor_labels = anchor_labels.new_full((len(all_anchors),), -1).masked_scatter(
                    valid, anchor_labels
                )
            if len(gt_per_image) > 0:
                classes = gt_per_image.gt_classes[matched_idxs]
                boxes = gt_per_image.gt_boxes.tensor[matched_idxs]
            else:
                classes = torch.zeros_like(matched_idxs)
                boxes = torch.zeros_like(all_anchors.tensor)
            classes = torch.where(anchor_labels == 1, classes, self.num_classes)
            classes = torch.where(anchor_labels == -1, -1, classes)
            boxes = torch.where((anchor_labels == 1)[:, None], boxes, torch.zeros_like(boxes))
            gt_labels.append(classes)
            matched_gt_boxes.append(boxes)
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        pred_logits: List[Tensor],
        gt_labels: List[Tensor],
        pred_anchor_deltas: List[Tensor],
        gt_boxes: List[Tensor],
    ) -> Dict[str, Tensor]:
        """RS loss and the balanced, score-weighted GIoU loss of the whole batch.

        Args:
            anchors: per-level Boxes, R anchors in total.
            pred_logits: per-level (N, R_l, K) logits; pred_anchor_deltas: per-level (N, R_l, 4).
            gt_labels, gt_boxes: from :meth:`label_anchors`, per image (R,) and (R, 4).
        Returns:
            the ranking loss's :meth:`~rs_detectron2.losses.RankingLoss.head_losses`, prefixed
            ``loss_dense``.
        """
        labels = torch.stack(gt_labels)  # (N, R)
        logits = cat(pred_logits, dim=1).float()  # (N, R, K)
        deltas = cat(pred_anchor_deltas, dim=1)  # (N, R, 4)
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        num_classes = self.num_classes

        positive = (labels >= 0) & (labels < num_classes)
        pos_img, pos_anchor = torch.nonzero(positive, as_tuple=True)
        pos_classes = labels[pos_img, pos_anchor]
        pred_boxes = self.box2box_transform.apply_deltas(
            deltas[pos_img, pos_anchor].float(), anchors[pos_anchor]
        )
        matched_gt = torch.stack(gt_boxes)[pos_img, pos_anchor].float()

        quality = regression_quality(pred_boxes, matched_gt)
        targets = ranking_targets(logits, (pos_img, pos_anchor, pos_classes), quality, labels < 0)
        box_weights = logits[pos_img, pos_anchor].detach().sigmoid().amax(dim=1)

        num_images = len(gt_labels)
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", pos_img.numel() / num_images)
        storage.put_scalar("num_ignored_anchors", (labels < 0).sum().item() / num_images)

        giou = giou_loss(pred_boxes, matched_gt)
        losses = self.ranking_loss.head_losses(
            logits, targets, giou, box_weights, prefix="loss_dense"
        )
        put_ranking_loss_scalars(self.ranking_loss, "dense")
        return losses

    def _decode_per_level_predictions(
        self,
        anchors: Boxes,
        pred_scores: Tensor,
        pred_deltas: Tensor,
        score_thresh: float,
        topk_candidates: int,
        image_size: Tuple[int, int],
    ) -> Instances:
        """One level's NMS candidates (see the class docstring for ``candidate_selection`` and
        ``clip_boxes_before_nms``).

        Args:
            anchors: the level's R anchors; pred_scores: (R, K) sigmoid scores; pred_deltas:
                (R, 4) box deltas.
            score_thresh, topk_candidates: the test score threshold and the per-level top-k.
            image_size: (h, w) of the image (clipping).
        Returns:
            Instances with ``pred_boxes``, ``scores`` and ``pred_classes``.
        """
        if self.candidate_selection == "pair":
            pred = super()._decode_per_level_predictions(
                anchors, pred_scores, pred_deltas, score_thresh, topk_candidates, image_size
            )
        else:
            anchor_boxes = anchors.tensor
            if len(pred_scores) > topk_candidates:
                top = pred_scores.amax(dim=1).topk(topk_candidates).indices
                anchor_boxes, pred_scores, pred_deltas = (
                    anchor_boxes[top],
                    pred_scores[top],
                    pred_deltas[top],
                )
            anchor_idxs, class_idxs = torch.nonzero(pred_scores > score_thresh, as_tuple=True)
            pred = Instances(
                image_size,
                pred_boxes=Boxes(
                    self.box2box_transform.apply_deltas(
                        pred_deltas[anchor_idxs], anchor_boxes[anchor_idxs]
                    )
                ),
                scores=pred_scores[anchor_idxs, class_idxs],
                pred_classes=class_idxs,
            )
        if self.clip_boxes_before_nms:
            pred.pred_boxes.clip(image_size)
        return pred

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """:meth:`RetinaNet.inference_single_image`, then score voting if enabled: the boxes kept
        by NMS are refined with all candidates that entered NMS (same class)."""
        pred = self._decode_multi_level_predictions(
            anchors,
            box_cls,
            box_delta,
            self.test_score_thresh,
            self.test_topk_candidates,
            image_size,
        )
        keep = batched_nms(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        result = pred[keep[: self.max_detections_per_image]]
        if self.score_voting:
            result.pred_boxes = Boxes(score_voting(result, pred, sigma=self.score_voting_sigma))
        return result
