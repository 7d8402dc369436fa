"""YOLACT (Bolya et al., "YOLACT: Real-time Instance Segmentation", ICCV 2019) as a Detectron2
dense detector, with its stock training losses: the baseline of RS-YOLACT (Oksuz et al., ICCV
2021, Sec. 6.2)."""

from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.layers import cat
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

from ..masks import crop_canvas_masks, rasterize_gt_masks, resize_full_image_masks
from .assembly import assemble_masks, crop_masks, gt_masks_at, relative_boxes
from .fast_nms import fast_nms

__all__ = ["Positives", "YOLACT", "YOLACTBatch", "yolact_postprocess"]

_LOG_EPS = 1e-12


class Positives(NamedTuple):
    """The positive anchors of a batch, in image-major order (``nonzero`` of an (N, R) mask).

    Every per-positive tensor a loss uses is gathered with these same indices, so the i-th box,
    coefficient vector, quality and mask target all belong to the same anchor.
    """

    image: Tensor  #: (P,) image index
    anchor: Tensor  #: (P,) anchor index within the image
    classes: Tensor  #: (P,) GT class
    gt_boxes: Tensor  #: (P, 4) matched GT box
    gt_index: Tensor  #: (P,) index of the matched GT among the batch's concatenated GTs


class YOLACTBatch(NamedTuple):
    """What :meth:`YOLACT.losses` (and a subclass's) receives for one training batch; N images,
    R anchors, K classes, P prototypes, G ground-truth instances in the batch."""

    anchors: Tensor  #: (R, 4) anchors of every level, concatenated
    logits: Tensor  #: (N, R, K + 1) with a background logit (stock), (N, R, K) without (RS)
    deltas: Tensor  #: (N, R, 4) box regression
    coeffs: Tensor  #: (N, R, P) mask coefficients
    protos: Tensor  #: (N, P, h, w) prototypes
    labels: Tensor  #: (N, R) from :meth:`YOLACT.label_anchors`: 1 positive, 0 negative, -1 ignored
    pos: Positives  #: the positive anchors and their ground truth
    mask_targets: Tensor  #: (G, h, w) from :meth:`YOLACT.mask_targets`
    input_size: Tuple[int, int]  #: the padded input (H, W)
    features: List[Tensor]  #: the head's input levels
    gt_instances: List[Instances]  #: per-image ground truth


def yolact_postprocess(
    results: Instances, output_height: int, output_width: int, mask_threshold: float = 0.5
) -> Instances:
    """Rescale one image's YOLACT detections to the output (original image) size.

    Unlike Detectron2's ``detector_postprocess``, which pastes per-box RoI masks, YOLACT's masks
    already cover the whole input image (which was resized without keeping its aspect ratio):
    they are resized bilinearly straight to the output size and thresholded.

    Args:
        results: detections at the network input size, with ``pred_boxes``, ``scores``,
            ``pred_classes`` and soft ``pred_masks`` (D, h, w) covering the whole input image.
        output_height, output_width: the size to return the detections at.
        mask_threshold: soft masks above this are foreground.
    Returns:
        Instances of size (output_height, output_width); ``pred_masks`` (D, H, W) bool.
    """
    input_height, input_width = results.image_size
    out = Instances((output_height, output_width), **results.get_fields())
    out.pred_boxes.scale(output_width / input_width, output_height / input_height)
    out.pred_boxes.clip(out.image_size)
    out.pred_masks = resize_full_image_masks(
        results.pred_masks, (output_height, output_width), mask_threshold
    )
    return out


class YOLACT(DenseDetector):
    """YOLACT: a dense detector whose anchors also predict mask coefficients, combined with the
    prototypes of a protonet on P3 into masks cropped by the box.

    Training (stock losses of the authors' mmdet baseline): softmax cross-entropy over K + 1
    classes with online hard negative mining (all positives and the ``neg_pos_ratio`` x as many
    highest-loss negatives per image), smooth-L1 on the encoded deltas of the positives, binary
    cross-entropy of the masks cropped by their GT box (at most ``max_masks_per_image`` random
    positives per image; each mask's mean divided by its GT box's area relative to the image) and
    a semantic-segmentation loss on P3. Losses: ``loss_cls``, ``loss_box_reg``, ``loss_mask``,
    ``loss_sem_seg``.

    Inference: per level the ``test_topk_candidates`` anchors with the highest max-class score,
    decoded and clipped; per-class Fast NMS (:func:`fast_nms`) with the score threshold after
    suppression; masks assembled for the kept detections, cropped by their box and returned at
    each image's ``height`` x ``width`` (:func:`yolact_postprocess`).

    The anchors (``anchor_generator``) must be laid out for the input size; the configs feed
    fixed square images (550 x 550) with the strides of :func:`pyramid_strides`.
    """

    #: whether the classifier has a background logit (softmax) instead of K sigmoids
    background_logit = True
    #: training needs ground-truth masks (read by the data checks before iteration 0)
    requires_gt_masks = True

    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: nn.Module,
        protonet: nn.Module,
        anchor_generator: nn.Module,
        box2box_transform,
        assigner,
        num_classes: int,
        head_in_features: Optional[List[str]] = None,
        semantic_head: Optional[nn.Module] = None,
        neg_pos_ratio: float = 3.0,
        box_loss_weight: float = 1.5,
        mask_loss_weight: float = 6.125,
        semantic_loss_weight: float = 1.0,
        smooth_l1_beta: float = 1.0,
        max_masks_per_image: int = 100,
        mask_crop_padding: int = 1,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_candidates: int = 1000,
        test_topk_per_class: int = 200,
        max_detections_per_image: int = 100,
        mask_threshold: float = 0.5,
        pixel_mean: Tuple[float, float, float],
        pixel_std: Tuple[float, float, float],
        input_format: str = "RGB",
    ):
        """
        Args:
            backbone: a backbone whose outputs include ``head_in_features`` (finest first: the
                protonet runs on the first).
            head: a :class:`YOLACTHead` (``background`` set as the classifier needs).
            protonet: a :class:`ProtoNet` on the first head level (P3).
            anchor_generator: Detectron2 anchor generator, as many anchors per location as the head.
            box2box_transform: Detectron2 ``Box2BoxTransform`` (weights (10, 10, 5, 5)).
            assigner: labels one image's anchors (``IoUAssigner((0.4, 0.5))``).
            num_classes: K, the number of object classes; the head (and semantic head) must
                predict K classes.
            head_in_features: backbone outputs for the head, finest first (default: all).
            semantic_head: a module mapping P3 to K per-class logit maps (training only); None
                drops the semantic-segmentation loss.
            neg_pos_ratio: OHEM negatives per positive.
            box_loss_weight, mask_loss_weight, semantic_loss_weight: loss weights (1.5, 6.125, 1).
            smooth_l1_beta: beta of the box loss.
            max_masks_per_image: mask-loss positives per image (a random subset above this).
            mask_crop_padding: proto-map pixels added around each crop box.
            test_score_thresh, test_nms_thresh, test_topk_per_class, max_detections_per_image:
                Fast NMS settings (:func:`fast_nms`).
            test_topk_candidates: candidates per level before NMS.
            mask_threshold: soft-mask threshold of the output masks.
            pixel_mean, pixel_std: input normalisation (``input_format`` channel order).
            input_format: channel order of the input images.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if head.num_classes != num_classes or head.background != self.background_logit:
            raise ValueError(
                f"{type(self).__name__} needs a head with num_classes={num_classes} and "
                f"background={self.background_logit}; got {head.num_classes} and {head.background}"
            )
        if semantic_head is not None and semantic_head.out_channels != num_classes:
            raise ValueError(
                f"semantic_head predicts {semantic_head.out_channels} classes, not {num_classes}"
            )
        self.protonet = protonet
        self.semantic_head = semantic_head
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.assigner = assigner
        self.num_classes = int(num_classes)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.box_loss_weight = float(box_loss_weight)
        self.mask_loss_weight = float(mask_loss_weight)
        self.semantic_loss_weight = float(semantic_loss_weight)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.max_masks_per_image = int(max_masks_per_image)
        self.mask_crop_padding = int(mask_crop_padding)
        self.test_score_thresh = float(test_score_thresh)
        self.test_nms_thresh = float(test_nms_thresh)
        self.test_topk_candidates = int(test_topk_candidates)
        self.test_topk_per_class = int(test_topk_per_class)
        self.max_detections_per_image = int(max_detections_per_image)
        self.mask_threshold = float(mask_threshold)
        self.input_format = input_format

    # ------------------------------------------------------------------ shared pieces
    def _dense_outputs(self, predictions, features):
        """(N, R, C)-shaped logits, deltas and coefficients of all levels, the prototypes
        (N, P, h, w) and the per-level anchors."""
        logits, deltas, coeffs = self._transpose_dense_predictions(
            predictions, [self.head.num_logits, 4, self.head.num_protos]
        )
        protos = self.protonet(features[0])
        return logits, deltas, coeffs, protos, self.anchor_generator(features)

    @torch.no_grad()
    def label_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[Tensor, Tensor]:
        """Run the assigner on every image.

        Args:
            anchors: per-level anchors (the same for every image); gt_instances: per-image
                ground truth.
        Returns:
            matched_idxs: (N, R) int64 index of the matched GT within its image;
            labels: (N, R) int8: 1 positive, 0 negative, -1 ignored.
        """
        num_per_level = [len(a) for a in anchors]
        anchors = Boxes.cat(anchors)
        matched, labels = zip(*(self.assigner(anchors, num_per_level, g) for g in gt_instances))
        return torch.stack(matched), torch.stack(labels)

    @staticmethod
    def positives(labels: Tensor, matched_idxs: Tensor, gt_instances: List[Instances]) -> Positives:
        """The positive anchors and their ground truth (see :class:`Positives`).

        Args:
            labels, matched_idxs: (N, R) from :meth:`label_anchors`.
            gt_instances: per-image ground truth.
        """
        image, anchor = torch.nonzero(labels == 1, as_tuple=True)
        offsets = torch.tensor([0] + [len(g) for g in gt_instances], device=labels.device)
        gt_index = matched_idxs[image, anchor] + offsets.cumsum(0)[:-1][image]
        classes = cat([g.gt_classes for g in gt_instances])[gt_index]
        gt_boxes = cat([g.gt_boxes.tensor for g in gt_instances])[gt_index]
        return Positives(image, anchor, classes, gt_boxes, gt_index)

    def mask_targets(self, gt_instances: List[Instances], input_size, proto_size) -> Tensor:
        """(G, h, w) mask targets of the batch's concatenated GTs at the prototype resolution."""
        return cat(
            [gt_masks_at(rasterize_gt_masks(g, input_size), proto_size) for g in gt_instances]
        )

    def positive_masks(
        self, protos: Tensor, coeffs: Tensor, pos: Positives, boxes_rel: Tensor
    ) -> Tensor:
        """Soft masks of the positives cropped by ``boxes_rel``.

        Args:
            protos: (N, P, h, w) prototypes; coeffs: (N, R, P) coefficients.
            pos: the positives; boxes_rel: (len(pos.image), 4) crop boxes relative to the input.
        Returns:
            (len(pos.image), h, w) masks, in the order of ``pos``.
        """
        masks = [
            assemble_masks(protos[i], coeffs[i, pos.anchor[pos.image == i]])
            for i in range(protos.shape[0])
        ]
        return crop_masks(cat(masks).float(), boxes_rel.float(), self.mask_crop_padding)

    def forward_training(self, images: ImageList, features, predictions, gt_instances):
        logits, deltas, coeffs, protos, anchors = self._dense_outputs(predictions, features)
        matched_idxs, labels = self.label_anchors(anchors, gt_instances)
        anchors = Boxes.cat(anchors).tensor
        pos = self.positives(labels, matched_idxs, gt_instances)
        input_size = tuple(images.tensor.shape[-2:])
        mask_targets = self.mask_targets(gt_instances, input_size, tuple(protos.shape[-2:]))
        storage = get_event_storage()
        storage.put_scalar("num_pos_anchors", len(pos.image) / len(gt_instances))
        batch = YOLACTBatch(
            anchors=anchors,
            logits=cat(logits, dim=1),
            deltas=cat(deltas, dim=1),
            coeffs=cat(coeffs, dim=1),
            protos=protos,
            labels=labels,
            pos=pos,
            mask_targets=mask_targets,
            input_size=input_size,
            features=features,
            gt_instances=gt_instances,
        )
        return self.losses(batch)

    # ------------------------------------------------------------------ stock losses
    def losses(self, batch: YOLACTBatch) -> Dict[str, Tensor]:
        """The stock YOLACT losses of a batch (see :class:`YOLACTBatch`).

        Returns:
            dict with ``loss_cls``, ``loss_box_reg``, ``loss_mask`` (and ``loss_sem_seg``).
        """
        labels, pos = batch.labels, batch.pos
        num_classes = self.num_classes
        # background is the last logit, as in Detectron2's softmax classifiers
        cls_targets = torch.full_like(labels, num_classes, dtype=torch.int64)
        cls_targets[pos.image, pos.anchor] = pos.classes
        ce = F.cross_entropy(
            batch.logits.float().flatten(0, 1), cls_targets.flatten(), reduction="none"
        ).view_as(labels)
        # OHEM: the ratio x #positives highest-loss negatives of each image
        num_pos = (labels == 1).sum(dim=1)
        num_neg = torch.minimum((num_pos * self.neg_pos_ratio).long(), (labels == 0).sum(dim=1))
        neg_loss = torch.where(labels == 0, ce, torch.zeros_like(ce))
        hardest, _ = neg_loss.sort(dim=1, descending=True)
        ranks = torch.arange(labels.shape[1], device=labels.device)
        loss_neg = (hardest * (ranks[None] < num_neg[:, None])).sum()
        normalizer = max(len(pos.image), 1)
        loss_cls = (ce[pos.image, pos.anchor].sum() + loss_neg) / normalizer

        gt_deltas = self.box2box_transform.get_deltas(batch.anchors[pos.anchor], pos.gt_boxes)
        loss_box = F.smooth_l1_loss(
            batch.deltas[pos.image, pos.anchor].float(),
            gt_deltas,
            beta=self.smooth_l1_beta,
            reduction="sum",
        )
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": loss_box * self.box_loss_weight / normalizer,
            "loss_mask": self.mask_bce_loss(
                batch.protos,
                batch.coeffs,
                pos,
                batch.mask_targets,
                batch.input_size,
                [g.image_size for g in batch.gt_instances],
            ),
        }
        if self.semantic_head is not None:
            losses["loss_sem_seg"] = self.semantic_loss(
                batch.features[0], batch.gt_instances, batch.input_size
            )
        return losses

    def mask_bce_loss(
        self, protos, coeffs, pos: Positives, mask_targets, input_size, image_sizes
    ) -> Tensor:
        """The stock mask loss: for at most ``max_masks_per_image`` random positives per image,
        the mean BCE of the mask (cropped by its GT box) divided by the GT box's area relative to
        the image; summed, times ``mask_loss_weight``, over the number of masks used. 0 (still
        attached to the prototypes) without positives."""
        keep = []
        for i in range(protos.shape[0]):
            idx = torch.nonzero(pos.image == i).flatten()
            if len(idx) > self.max_masks_per_image:
                perm = torch.randperm(len(idx), device=idx.device)
                idx = idx[perm[: self.max_masks_per_image]].sort().values
            keep.append(idx)
        keep = cat(keep)
        pos = Positives(*(t[keep] for t in pos))
        boxes_rel = relative_boxes(pos.gt_boxes, input_size)
        masks = self.positive_masks(protos, coeffs, pos, boxes_rel)
        # BCE written out so that it runs under autocast and a diverged (NaN) mask reaches the
        # trainer's finiteness check instead of raising here; log(0) outside the crop is capped
        masks = masks.float()
        targets = mask_targets[pos.gt_index]
        log_p = masks.clamp(min=_LOG_EPS).log()
        log_not_p = (1.0 - masks).clamp(min=_LOG_EPS).log()
        bce = -(targets * log_p + (1.0 - targets) * log_not_p).mean(dim=(1, 2))
        # each GT box's area relative to its image (not the padded input); the data pipeline
        # drops degenerate boxes, the clamp only keeps a zero-area box finite
        image_hw = torch.tensor(image_sizes, dtype=torch.float32, device=masks.device)[pos.image]
        box_wh = (pos.gt_boxes[:, 2:] - pos.gt_boxes[:, :2]).float()
        area = (box_wh[:, 0] / image_hw[:, 1] * box_wh[:, 1] / image_hw[:, 0]).clamp(min=1e-6)
        loss = (bce / area).sum() * self.mask_loss_weight / max(len(keep), 1)
        return loss + 0.0 * protos.sum()

    def semantic_loss(self, p3: Tensor, gt_instances: List[Instances], input_size) -> Tensor:
        """Per-class sigmoid BCE of the semantic head on P3 against the union of each class's GT
        masks (resized to P3, > 0.5), summed and divided by N x H x W; images without GT add 0."""
        sem_logits = self.semantic_head(p3).float()
        size = tuple(sem_logits.shape[-2:])
        total = sem_logits.sum() * 0.0
        for i, gt in enumerate(gt_instances):
            if len(gt) == 0:
                continue
            masks = gt_masks_at(rasterize_gt_masks(gt, input_size), size)
            target = torch.zeros_like(sem_logits[i])
            target.index_put_((gt.gt_classes,), masks, accumulate=True)
            total = total + F.binary_cross_entropy_with_logits(
                sem_logits[i], target.clamp(max=1.0), reduction="sum"
            )
        return total * self.semantic_loss_weight / sem_logits[:, 0].numel()

    # ------------------------------------------------------------------ inference
    def class_scores(self, logits: Tensor) -> Tensor:
        """(..., K + 1) logits -> (..., K) object-class probabilities (softmax, background
        dropped)."""
        return logits.float().softmax(dim=-1)[..., : self.num_classes]

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """:meth:`DenseDetector.forward`, except that inference returns full-image masks
        through :func:`yolact_postprocess` instead of pasting RoI masks."""
        if self.training:
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        results = self.forward_inference(images, features, self.head(features))
        processed = []
        for result, inputs, size in zip(results, batched_inputs, images.image_sizes):
            height, width = inputs.get("height", size[0]), inputs.get("width", size[1])
            processed.append(
                {"instances": yolact_postprocess(result, height, width, self.mask_threshold)}
            )
        return processed

    def forward_inference(self, images: ImageList, features, predictions) -> List[Instances]:
        """Detections of every image at its input size, with soft ``pred_masks`` covering the
        input image."""
        logits, deltas, coeffs, protos, anchors = self._dense_outputs(predictions, features)
        return [
            self.inference_single_image(
                anchors,
                [self.class_scores(x[i]) for x in logits],
                [x[i] for x in deltas],
                [x[i] for x in coeffs],
                protos[i],
                image_size,
                tuple(images.tensor.shape[-2:]),
            )
            for i, image_size in enumerate(images.image_sizes)
        ]

    def inference_single_image(
        self,
        anchors: List[Boxes],
        scores: List[Tensor],
        deltas: List[Tensor],
        coeffs: List[Tensor],
        protos: Tensor,
        image_size: Tuple[int, int],
        input_size: Tuple[int, int],
    ) -> Instances:
        """Fast NMS and masks of one image.

        Args:
            anchors: per-level Boxes; scores: per-level (R_l, K) probabilities; deltas: per-level
                (R_l, 4); coeffs: per-level (R_l, P); protos: (P, h, w) covering the padded input.
            image_size: (height, width) of the image; input_size: of the padded batch tensor.
        Returns:
            Instances of ``image_size`` with ``pred_boxes``, ``scores``, ``pred_classes`` and soft
            ``pred_masks`` (D, h', w') covering the image.
        """
        cand_boxes, cand_scores, cand_coeffs = [], [], []
        for anchors_l, scores_l, deltas_l, coeffs_l in zip(anchors, scores, deltas, coeffs):
            top = scores_l.amax(dim=1).topk(min(self.test_topk_candidates, len(scores_l))).indices
            cand_boxes.append(
                self.box2box_transform.apply_deltas(deltas_l[top].float(), anchors_l.tensor[top])
            )
            cand_scores.append(scores_l[top])
            cand_coeffs.append(coeffs_l[top])
        boxes = Boxes(cat(cand_boxes))
        boxes.clip(image_size)
        keep, det_scores, det_classes = fast_nms(
            boxes.tensor,
            cat(cand_scores),
            score_thresh=self.test_score_thresh,
            iou_thresh=self.test_nms_thresh,
            top_k=self.test_topk_per_class,
            max_num=self.max_detections_per_image,
        )
        boxes = boxes[keep]
        masks = assemble_masks(protos, cat(cand_coeffs)[keep])
        masks = crop_masks(masks, relative_boxes(boxes.tensor, input_size), self.mask_crop_padding)
        if tuple(image_size) != tuple(input_size) and len(masks):
            # the prototypes cover the padded batch: keep the image's part
            masks = crop_canvas_masks(masks, input_size, image_size)
        return Instances(
            image_size,
            pred_boxes=boxes,
            scores=det_scores,
            pred_classes=det_classes,
            pred_masks=masks,
        )
