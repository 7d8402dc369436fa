"""The RS dense (one-stage) detector: anchor-based dense heads trained with a ranking loss (RS by
default; Oksuz et al. 2021). RS-RetinaNet, RS-ATSS, RS-PAA and RS-FCOS are this one class,
configured."""

from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.backbone import Backbone, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform, Box2BoxTransformLinear
from detectron2.modeling.meta_arch import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

from ...losses import RankingLoss, RankSortLoss, giou_loss, ranking_targets
from ..anchor_validity import valid_anchor_mask
from ..assigners import AnchorAssigner, build_assigner
from ..events import put_mean_loss_scalar, put_ranking_loss_scalars
from ..quality import regression_quality
from ..ranking_loss import build_ranking_loss
from .dense_head import build_dense_head
from .score_voting import score_voting

__all__ = ["RSDenseDetector", "RSRetinaNet"]

# The box coders of a yacs config, by MODEL.RS.DENSE.BOX_TRANSFORM: the R-CNN one with the RS
# weights (MODEL.RS.BBOX_REG_WEIGHTS), or FCOS's distances to the four sides in strides.
_BOX_TRANSFORMS = {
    "Box2BoxTransform": lambda cfg: Box2BoxTransform(weights=cfg.MODEL.RS.BBOX_REG_WEIGHTS),
    "Box2BoxTransformLinear": lambda cfg: Box2BoxTransformLinear(normalize_by_size=True),
}


@META_ARCH_REGISTRY.register()
class RSDenseDetector(DenseDetector):
    """A dense detector over anchors trained with a ranking loss (RS by default): RS-RetinaNet,
    RS-ATSS, RS-PAA and RS-FCOS differ only in their ``assigner``, head, anchors, box coder and
    test settings (see ``configs/common/models/rs_{retinanet,atss,paa,fcos}_fpn.py``; RS-FCOS's
    points are one stride-sized anchor per location with FCOS's linear box coder). It stands on
    Detectron2's :class:`DenseDetector` as Detectron2's FCOS does: :meth:`forward_training`
    labels the anchors (:meth:`label_anchors`, with a pluggable assigner) and computes
    :meth:`losses`; :meth:`forward_inference` decodes the detections.

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
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        anchor_generator: nn.Module,
        box2box_transform: Union[Box2BoxTransform, Box2BoxTransformLinear],
        assigner: AnchorAssigner,
        num_classes: int,
        ranking_loss: Optional[RankingLoss] = None,
        ignore_padding_anchors: bool = True,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
        candidate_selection: str = "anchor",
        clip_boxes_before_nms: bool = True,
        score_voting: bool = False,
        score_voting_sigma: float = 0.025,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        input_format: str = "BGR",
    ):
        """
        Args:
            backbone, head, head_in_features, pixel_mean, pixel_std: see :class:`DenseDetector`;
                ``head`` maps the per-level features to per-level ``(logits (N, A*K, Hi, Wi),
                deltas (N, A*4, Hi, Wi))`` (:class:`RetinaNetHead`, :class:`ScaledRetinaNetHead`).
            anchor_generator: A anchors per location on every level (Detectron2's).
            box2box_transform: the box coder of the deltas: ``Box2BoxTransform`` (RS-RetinaNet,
                RS-ATSS, RS-PAA) or another with its ``get_deltas`` / ``apply_deltas``, such as
                FCOS's ``Box2BoxTransformLinear`` (RS-FCOS). Boxes are decoded in float32.
            assigner: labels one image's anchors, see :mod:`rs_detectron2.modeling.assigners`
                (``IoUAssigner`` for RS-RetinaNet, ``ATSSAssigner``, ``PAAAssigner``,
                ``FCOSAssigner``).
            num_classes: K.
            ranking_loss: the ranking loss of the classifier and the weighting of the box loss
                (default: :class:`RankSortLoss` with the paper's delta 0.5).
            ignore_padding_anchors: the anchors on an image's batch padding are left out of
                assignment and ignored by the loss (the authors' code,
                :func:`~rs_detectron2.modeling.anchor_validity.valid_anchor_mask`); False: they
                are assigned like the others (Detectron2), mostly as negatives.
            test_score_thresh, test_topk_candidates, test_nms_thresh, max_detections_per_image:
                as :class:`RetinaNet`'s (candidates per level, see ``candidate_selection``).
            candidate_selection: "anchor" (the authors') or "pair" (Detectron2), see above.
            clip_boxes_before_nms: clip candidate boxes to the image before NMS and score voting
                (the authors'); False: Detectron2's RetinaNet.
            score_voting: PAA's score voting at test time (RS-PAA).
            score_voting_sigma: its IoU weighting width (0.025).
            input_format: the channel order of the input images ("BGR" or "RGB").
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if candidate_selection not in ("anchor", "pair"):
            raise ValueError(
                f"candidate_selection must be 'anchor' or 'pair': {candidate_selection}"
            )
        self.num_classes = num_classes
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.assigner = assigner
        self.ranking_loss = RankSortLoss() if ranking_loss is None else ranking_loss
        self.ignore_padding_anchors = bool(ignore_padding_anchors)
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.candidate_selection = candidate_selection
        self.clip_boxes_before_nms = bool(clip_boxes_before_nms)
        self.score_voting = bool(score_voting)
        self.score_voting_sigma = float(score_voting_sigma)
        self.input_format = input_format

    @classmethod
    def from_config(cls, cfg):
        """yacs: :class:`RetinaNet`'s keys (backbone, anchors, head convs and norm, test
        settings), with ``cfg.MODEL.RS``'s ranking loss (:func:`build_ranking_loss`), box coder
        weights and padding anchors, and ``MODEL.RS.DENSE``'s box coder (``BOX_TRANSFORM``:
        ``Box2BoxTransform`` with ``MODEL.RS.BBOX_REG_WEIGHTS``, or FCOS's
        ``Box2BoxTransformLinear``), assigner (:func:`build_assigner`), head
        (:func:`build_dense_head`) and test-time rules."""
        backbone = build_backbone(cfg)
        backbone_shape = backbone.output_shape()
        retina, rs, dense = cfg.MODEL.RETINANET, cfg.MODEL.RS, cfg.MODEL.RS.DENSE
        feature_shapes = [backbone_shape[f] for f in retina.IN_FEATURES]
        if dense.BOX_TRANSFORM not in _BOX_TRANSFORMS:
            raise ValueError(
                f"MODEL.RS.DENSE.BOX_TRANSFORM must be one of {sorted(_BOX_TRANSFORMS)}, "
                f"got {dense.BOX_TRANSFORM!r}"
            )
        return {
            "backbone": backbone,
            "head": build_dense_head(cfg, feature_shapes),
            "head_in_features": retina.IN_FEATURES,
            "anchor_generator": build_anchor_generator(cfg, feature_shapes),
            # MODEL.RS.BBOX_REG_WEIGHTS, not MODEL.RETINANET's: one box coder for every RS head
            "box2box_transform": _BOX_TRANSFORMS[dense.BOX_TRANSFORM](cfg),
            "assigner": build_assigner(cfg),
            "num_classes": retina.NUM_CLASSES,
            "ranking_loss": build_ranking_loss(cfg),
            "ignore_padding_anchors": rs.IGNORE_PADDING_ANCHORS,
            "test_score_thresh": retina.SCORE_THRESH_TEST,
            "test_topk_candidates": retina.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": retina.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "candidate_selection": dense.CANDIDATE_SELECTION,
            "clip_boxes_before_nms": dense.CLIP_BOXES_BEFORE_NMS,
            "score_voting": dense.SCORE_VOTING,
            "score_voting_sigma": dense.SCORE_VOTING_SIGMA,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
        }

    def forward_training(self, images, features, predictions, gt_instances):
        """:meth:`DenseDetector.forward` in training: label the anchors, return :meth:`losses`."""
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
        """Run the assigner on every image (:meth:`assign_image`); the outputs have the format of
        :meth:`RetinaNet.label_anchors`.

        Args:
            anchors: per-level Boxes (the same for every image), R anchors in total.
            gt_instances: per-image ground truth.
            pred_logits, pred_anchor_deltas: per-level (N, R_l, K) / (N, R_l, 4) predictions;
                needed only by assigners with ``uses_predictions`` (PAA).
            image_sizes: per-image (h, w) without batch padding (default: the ground truth's
                ``image_size``).
        Returns:
            gt_labels: per image (R,) int64 in {-1 (ignored), 0..K-1 (class), K (background)}.
            matched_gt_boxes: per image (R, 4), the matched GT box (zeros where not positive).
        """
        if image_sizes is None:
            image_sizes = [x.image_size for x in gt_instances]
        if getattr(self.assigner, "uses_predictions", False):
            pred_logits, pred_anchor_deltas = cat(pred_logits, dim=1), cat(pred_anchor_deltas, 1)
        else:
            pred_logits = pred_anchor_deltas = None

        gt_labels, matched_gt_boxes = [], []
        for i, gt_per_image in enumerate(gt_instances):
            predictions = None if pred_logits is None else (pred_logits[i], pred_anchor_deltas[i])
            matched_idxs, anchor_labels = self.assign_image(
                anchors, gt_per_image, image_sizes[i], predictions
            )
            if len(gt_per_image) > 0:
                classes = gt_per_image.gt_classes[matched_idxs]
                boxes = gt_per_image.gt_boxes.tensor[matched_idxs]
            else:
                classes = torch.zeros_like(matched_idxs)
                boxes = anchors[0].tensor.new_zeros((len(matched_idxs), 4))
            classes = torch.where(anchor_labels == 1, classes, self.num_classes)
            classes = torch.where(anchor_labels == -1, -1, classes)
            boxes = torch.where((anchor_labels == 1)[:, None], boxes, torch.zeros_like(boxes))
            gt_labels.append(classes)
            matched_gt_boxes.append(boxes)
        return gt_labels, matched_gt_boxes

    @torch.no_grad()
    def assign_image(
        self,
        anchors: List[Boxes],
        gt_instances: Instances,
        image_size: Tuple[int, int],
        predictions: Optional[Tuple[Tensor, Tensor]] = None,
    ) -> Tuple[Tensor, Tensor]:
        """The assigner's labels of one image's anchors; with ``ignore_padding_anchors`` it sees
        only the anchors off the batch padding, and the others are ignored.

        Args:
            anchors: per-level Boxes, R anchors in total.
            gt_instances: the image's ground truth.
            image_size: (h, w) of the image without batch padding.
            predictions: the image's (R, K) logits and (R, 4) deltas, for an assigner with
                ``uses_predictions`` (PAA); None otherwise.
        Returns:
            matched_idxs: (R,) int64 index of the matched GT (meaningful where the label is 1).
            labels: (R,) in {1 (positive), 0 (negative), -1 (ignored)}.
        """
        all_anchors = Boxes.cat(anchors)
        counts = [len(a) for a in anchors]
        valid = None
        if self.ignore_padding_anchors:
            gen = self.anchor_generator
            valid = valid_anchor_mask(anchors, gen.strides, gen.offset, image_size)
            all_anchors = all_anchors[valid]
            counts = [int(v.sum()) for v in valid.split(counts)]
        extra = {}
        if predictions is not None:
            logits, deltas = predictions
            if valid is not None:
                logits, deltas = logits[valid], deltas[valid]
            extra["pred_logits"] = logits.detach().float()
            extra["pred_boxes"] = self.box2box_transform.apply_deltas(
                deltas.detach().float(), all_anchors.tensor
            )
        matched_idxs, labels = self.assigner(all_anchors, counts, gt_instances, **extra)
        if valid is None:
            return matched_idxs, labels
        # back to all anchors, the invalid ones ignored
        matched_idxs = matched_idxs.new_zeros(len(valid)).masked_scatter(valid, matched_idxs)
        labels = labels.new_full((len(valid),), -1).masked_scatter(valid, labels)
        return matched_idxs, labels

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
        put_mean_loss_scalar("dense/giou_loss", giou)  # unweighted: loss_dense_box is balanced
        losses = self.ranking_loss.head_losses(
            logits, targets, giou, box_weights, prefix="loss_dense"
        )
        put_ranking_loss_scalars(self.ranking_loss, "dense")
        return losses

    def forward_inference(
        self, images: ImageList, features: List[Tensor], predictions: List[List[Tensor]]
    ) -> List[Instances]:
        """:meth:`DenseDetector.forward` at test time: the detections of every image (at its input
        size; :meth:`DenseDetector.forward` rescales them), by :meth:`inference_single_image`.

        Args:
            images: the batch; features: the head's per-level inputs; predictions: the head's
                per-level logits and deltas.
        """
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores_per_image = [x[img_idx].sigmoid_() for x in pred_logits]
            # float32: Box2BoxTransform decodes in float32 whatever it gets, the linear coder in
            # the deltas' dtype (bfloat16 under autocast rounds coordinates near 1000 to 4-8 px)
            deltas_per_image = [x[img_idx].float() for x in pred_anchor_deltas]
            results.append(
                self.inference_single_image(anchors, scores_per_image, deltas_per_image, image_size)
            )
        return results

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
        """Candidates of every level (:meth:`_decode_per_level_predictions`), per-class NMS, the top
        ``max_detections_per_image``, then score voting if enabled: the boxes kept by NMS are
        refined with all candidates that entered NMS (same class).

        Args:
            anchors: per-level Boxes; box_cls: per-level (R_l, K) sigmoid scores; box_delta:
                per-level (R_l, 4) deltas; image_size: (h, w) of the image.
        Returns:
            Instances with ``pred_boxes``, ``scores`` and ``pred_classes``.
        """
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


# Its name while it was a RetinaNet subclass: LazyConfigs with ``_target_=RSRetinaNet`` and yacs
# configs with ``META_ARCHITECTURE: RSRetinaNet`` build this same class. Registry.register() takes
# an object's __name__, so the second registry name is added by hand.
RSRetinaNet = RSDenseDetector
META_ARCH_REGISTRY._do_register("RSRetinaNet", RSDenseDetector)
