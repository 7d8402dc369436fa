"""SOLOv2 (Wang et al., "SOLOv2: Dynamic and Fast Instance Segmentation", NeurIPS 2020) as a
Detectron2 dense detector, with its stock losses: focal loss on the category grids and Dice x 3
on the masks."""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import sigmoid_focal_loss
from torch import Tensor, nn

from detectron2.layers import cat
from detectron2.modeling import Backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import BitMasks, Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage

from ...losses import dice_loss
from ..masks import resize_full_image_masks
from .head import solov2_level_features
from .matrix_nms import matrix_nms, points_nms
from .targets import SOLOv2Targets, solov2_targets

__all__ = ["DICE_EPS", "SOLOv2", "solov2_postprocess"]

# Dice of the authors' code: 2 sum(m t) / ((sum m^2 + 0.001) + (sum t^2 + 0.001)).
DICE_EPS = 0.002


def _flatten_levels(per_level: List[Tensor]) -> Tensor:
    """Per-level (N, D, S, S) maps -> (N, sum S^2, D), each level in raster order."""
    return cat([x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]) for x in per_level], 1)


class SOLOv2(DenseDetector):
    """SOLOv2: each cell of an S x S grid on each of five levels predicts a class distribution
    and the kernel of a 1x1 dynamic convolution that turns the shared mask features into that
    cell's instance mask. Box-free: boxes at test time are the masks' tight boxes.

    Training: targets from :func:`solov2_targets`; :meth:`losses` (the method RS-SOLOv2
    overrides) takes the category logits of all cells and the mask logits of the positive pairs.
    Stock losses: ``loss_solo_cls`` (sigmoid focal loss over all cells x classes, summed and
    divided by the number of positive cells + 1) and ``loss_solo_mask`` (mean Dice loss over the
    positive pairs x ``mask_loss_weight``).

    Inference (the SOLOv2 paper's and the authors' code): points NMS on the category maps,
    score threshold, masks of the kept cells binarised at ``test_mask_thresh``, masks not larger
    than their level's stride dropped, score x maskness, the top ``test_nms_pre``, Matrix NMS,
    score >= ``test_update_thresh``, the top ``max_detections_per_image``; masks upsampled to the
    padded input, cropped to the image and resized to the requested output size. Output
    ``Instances`` have ``pred_masks`` (bool, full output size), ``pred_boxes`` (the masks' tight
    boxes), ``scores``, ``pred_classes``, so COCO evaluators give mask and box AP unchanged.

    As a :class:`DenseDetector`, training is :meth:`forward_training` and inference
    :meth:`forward_inference`; :meth:`forward` itself is SOLOv2's, as its instance head reads
    resized levels (:func:`solov2_level_features`), its mask head other levels, and Detectron2's
    ``detector_postprocess`` would paste the masks as box-relative RoI masks.
    """

    #: training needs ground-truth masks (read by the data checks before iteration 0)
    requires_gt_masks = True

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        mask_head: nn.Module,
        num_classes: int,
        scale_ranges: Sequence[Tuple[float, float]],
        head_in_features: Sequence[str] = ("p2", "p3", "p4", "p5", "p6"),
        mask_in_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
        strides: Sequence[int] = (8, 8, 16, 32, 32),
        center_sigma: float = 0.2,
        first_come: bool = False,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        mask_loss_weight: float = 3.0,
        test_score_thresh: float = 0.1,
        test_mask_thresh: float = 0.5,
        test_nms_pre: int = 500,
        test_update_thresh: float = 0.05,
        test_nms_kernel: str = "gaussian",
        test_nms_sigma: float = 2.0,
        max_detections_per_image: int = 100,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """
        Args:
            backbone: FPN giving ``head_in_features`` (P2-P6) and ``mask_in_features`` (P2-P5),
                with a size divisibility of 32.
            head: a :class:`SOLOv2InstanceHead` (its ``num_grids`` are the levels' S).
            mask_head: a :class:`SOLOv2MaskFeatHead`.
            num_classes: K; must equal ``head.num_classes``.
            scale_ranges: per level, the (lower, upper) sqrt-area of the objects it learns.
            strides: per level, the stride of its features (the area filter at test time).
            center_sigma: scale of the centre regions.
            first_come: cell assignment of overlapping objects, see :func:`solov2_targets`
                (stock SOLOv2: False).
            focal_loss_alpha, focal_loss_gamma, mask_loss_weight: the stock losses.
            test_*: inference settings, see above (``test_nms_kernel``: ``"gaussian"`` or
                ``"linear"``, ``test_nms_sigma``: the gaussian's factor).
            max_detections_per_image: detections kept per image.
            pixel_mean, pixel_std: input normalisation.
        """
        super().__init__(
            backbone, head, list(head_in_features), pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if head.num_classes != num_classes:
            raise ValueError(
                f"num_classes={num_classes} but the instance head has {head.num_classes} classes; "
                "set the model's num_classes (the head follows it in the shipped configs)"
            )
        if mask_head.num_kernels != head.num_kernels:
            raise ValueError(
                f"the mask features have {mask_head.num_kernels} channels but the instance head "
                f"predicts kernels of {head.num_kernels}"
            )
        num_levels = len(head.num_grids)
        if not (len(scale_ranges) == len(strides) == len(head_in_features) == num_levels):
            raise ValueError(
                f"{num_levels} grids need as many scale ranges, strides and input features; got "
                f"{len(scale_ranges)}, {len(strides)}, {len(head_in_features)}"
            )
        self.mask_head = mask_head
        self.num_classes = int(num_classes)
        self.mask_in_features = list(mask_in_features)
        self.scale_ranges = [tuple(float(v) for v in r) for r in scale_ranges]
        self.strides = [int(s) for s in strides]
        self.center_sigma = float(center_sigma)
        self.first_come = bool(first_come)
        self.focal_loss_alpha = float(focal_loss_alpha)
        self.focal_loss_gamma = float(focal_loss_gamma)
        self.mask_loss_weight = float(mask_loss_weight)
        self.test_score_thresh = float(test_score_thresh)
        self.test_mask_thresh = float(test_mask_thresh)
        self.test_nms_pre = int(test_nms_pre)
        self.test_update_thresh = float(test_update_thresh)
        self.test_nms_kernel = str(test_nms_kernel)
        self.test_nms_sigma = float(test_nms_sigma)
        self.max_detections_per_image = int(max_detections_per_image)

    @property
    def num_grids(self) -> List[int]:
        return self.head.num_grids

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """:meth:`DenseDetector.forward` for SOLOv2's two heads, whose ``predictions`` are the
        instance head's category logits and kernels on :func:`solov2_level_features` and the mask
        features of ``mask_in_features``. At test time the masks are full-image masks
        (:func:`solov2_postprocess`), where ``detector_postprocess`` would paste box-relative
        RoI masks.

        Args:
            batched_inputs: Detectron2's list of per-image dicts (``image``; in training
                ``instances`` with ``gt_masks``; optionally ``height`` / ``width``, the output
                size).
        Returns:
            training: dict of 0-dim losses; inference: per image ``{"instances": Instances}``.
        """
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        head_features = [features[f] for f in self.head_in_features]
        cate_logits, kernels = self.head(solov2_level_features(head_features))
        mask_features = self.mask_head([features[f] for f in self.mask_in_features])
        predictions = (cate_logits, kernels, mask_features)
        if self.training:
            assert "instances" in batched_inputs[0], "Instance annotations are missing in training!"
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            return self.forward_training(images, head_features, predictions, gt_instances)

        results = self.forward_inference(images, head_features, predictions)
        canvas_size = tuple(images.tensor.shape[-2:])
        processed = []
        for result, inputs, size in zip(results, batched_inputs, images.image_sizes):
            height, width = inputs.get("height", size[0]), inputs.get("width", size[1])
            instances = solov2_postprocess(
                result, height, width, canvas_size, self.test_mask_thresh
            )
            processed.append({"instances": instances})
        return processed

    def forward_training(
        self,
        images: ImageList,
        features: List[Tensor],
        predictions: Tuple[List[Tensor], List[Tensor], Tensor],
        gt_instances: List[Instances],
    ) -> Dict[str, Tensor]:
        """The grid targets (:func:`solov2_targets`) and :meth:`losses` of a batch.

        Args:
            images: the batch; features: the backbone levels of ``head_in_features`` (unused).
            predictions: per-level (N, K, S, S) category logits and (N, E, S, S) kernels, and the
                (N, E, H/4, W/4) mask features.
            gt_instances: per-image ground truth with ``gt_masks``.
        """
        cate_logits, kernels, mask_features = predictions
        targets = solov2_targets(
            gt_instances,
            tuple(images.tensor.shape[-2:]),
            self.num_classes,
            self.num_grids,
            self.scale_ranges,
            sigma=self.center_sigma,
            first_come=self.first_come,
        )
        logits = _flatten_levels(cate_logits)
        mask_logits = self.positive_mask_logits(_flatten_levels(kernels), mask_features, targets)
        storage = get_event_storage()
        storage.put_scalar(
            "num_pos_cells", float((targets.labels != self.num_classes).sum()) / len(images)
        )
        return self.losses(logits, mask_logits, targets)

    def forward_inference(
        self,
        images: ImageList,
        features: List[Tensor],
        predictions: Tuple[List[Tensor], List[Tensor], Tensor],
    ) -> List[Instances]:
        """Detections of every image (:meth:`inference_single_image`), with soft masks at the
        mask features' resolution; :func:`solov2_postprocess` makes them the output's.

        Args:
            images, features, predictions: as :meth:`forward_training`'s.
        """
        cate_logits, kernels, mask_features = predictions
        scores = _flatten_levels([points_nms(x.sigmoid()) for x in cate_logits])
        kernels = _flatten_levels(kernels)
        return [
            self.inference_single_image(scores[i], kernels[i], mask_features[i], image_size)
            for i, image_size in enumerate(images.image_sizes)
        ]

    @staticmethod
    def positive_mask_logits(kernels: Tensor, mask_features: Tensor, targets: SOLOv2Targets):
        """Mask logits of the positive pairs: each pair's cell kernel as a 1x1 convolution of its
        image's mask features.

        Args:
            kernels: (N, C, E) kernels of all cells; mask_features: (N, E, H', W').
            targets: the batch's targets (pairs sorted by image).
        Returns:
            (M, H', W') logits in the order of ``targets.pos_*``.
        """
        n, e, h, w = mask_features.shape
        counts = torch.bincount(targets.pos_img, minlength=n).tolist()
        cells = torch.split(targets.pos_cell, counts)
        out = [kernels[i, c] @ mask_features[i].reshape(e, h * w) for i, c in enumerate(cells)]
        return cat(out, dim=0).reshape(-1, h, w)

    def losses(
        self, logits: Tensor, mask_logits: Tensor, targets: SOLOv2Targets
    ) -> Dict[str, Tensor]:
        """Stock SOLOv2 losses.

        Args:
            logits: (N, C, K) category logits of all cells (levels concatenated, raster order).
            mask_logits: (M, H', W') mask logits of the positive pairs.
            targets: their targets, see :class:`SOLOv2Targets`.
        Returns:
            ``loss_solo_cls`` (focal) and ``loss_solo_mask`` (Dice x ``mask_loss_weight``).
        """
        logits = logits.float()
        labels = targets.labels
        one_hot = F.one_hot(labels, self.num_classes + 1)[..., : self.num_classes].to(logits.dtype)
        num_pos = (labels != self.num_classes).sum()
        loss_cls = sigmoid_focal_loss(
            logits, one_hot, self.focal_loss_alpha, self.focal_loss_gamma, reduction="sum"
        ) / (num_pos + 1)
        dice = dice_loss(
            mask_logits.float().sigmoid(), targets.gt_masks[targets.pos_gt], eps=DICE_EPS
        )
        loss_mask = dice.sum() / max(len(dice), 1) * self.mask_loss_weight
        return {"loss_solo_cls": loss_cls, "loss_solo_mask": loss_mask}

    def inference_single_image(
        self,
        scores: Tensor,
        kernels: Tensor,
        mask_features: Tensor,
        image_size: Tuple[int, int],
    ) -> Instances:
        """Detections of one image.

        Args:
            scores: (C, K) category scores after points NMS; kernels: (C, E).
            mask_features: (E, H', W') at stride 4 of the padded canvas.
            image_size: (h, w) of the resized image inside the padded canvas.
        Returns:
            Instances of size ``image_size`` with ``scores``, ``pred_classes`` and soft
            ``pred_masks`` (D, H', W') covering the padded canvas, at the mask features'
            resolution (kept small until :func:`solov2_postprocess` gives the output's binary
            masks and their boxes).
        """
        strides = torch.cat(
            [scores.new_full((s * s,), float(st)) for s, st in zip(self.num_grids, self.strides)]
        )
        cells, classes = torch.nonzero(scores > self.test_score_thresh, as_tuple=True)
        scores = scores[cells, classes].float()
        e, h, w = mask_features.shape
        masks = (kernels[cells] @ mask_features.reshape(e, h * w)).float().sigmoid()
        masks = masks.reshape(-1, h, w)
        binary = masks > self.test_mask_thresh
        area = binary.sum(dim=(1, 2)).float()
        keep = area > strides[cells]
        masks, binary, area, scores, classes = (
            masks[keep],
            binary[keep],
            area[keep],
            scores[keep],
            classes[keep],
        )
        maskness = (masks * binary).sum(dim=(1, 2)) / area.clamp(min=1)
        scores = scores * maskness

        order = torch.argsort(scores, descending=True)[: self.test_nms_pre]
        masks, binary, scores, classes = masks[order], binary[order], scores[order], classes[order]
        scores = matrix_nms(binary, classes, scores, self.test_nms_kernel, self.test_nms_sigma)
        keep = scores >= self.test_update_thresh
        masks, scores, classes = masks[keep], scores[keep], classes[keep]
        order = torch.argsort(scores, descending=True)[: self.max_detections_per_image]
        masks, scores, classes = masks[order], scores[order], classes[order]

        return Instances(
            tuple(image_size),
            pred_masks=masks,
            scores=scores,
            pred_classes=classes,
        )


def solov2_postprocess(
    results: Instances,
    output_height: int,
    output_width: int,
    canvas_size: Tuple[int, int],
    mask_threshold: float = 0.5,
) -> Instances:
    """One image's SOLOv2 detections at the output (original image) size: the soft masks cropped
    to the image, resized and binarised (:func:`resize_full_image_masks`), the boxes their tight
    boxes.

    Args:
        results: from :meth:`SOLOv2.inference_single_image` (its size is the image's).
        output_height, output_width: the size to return the detections at.
        canvas_size: (H, W) of the padded batch the image was in.
        mask_threshold: soft masks above it are foreground.
    Returns:
        Instances of size (output_height, output_width) with ``pred_masks`` (D, H, W) bool,
        ``pred_boxes``, ``scores`` and ``pred_classes``.
    """
    output_size = (output_height, output_width)
    pred_masks = resize_full_image_masks(
        results.pred_masks,
        output_size,
        mask_threshold,
        canvas_size=canvas_size,
        image_size=results.image_size,
    )
    out = Instances(output_size)
    out.pred_masks = pred_masks
    out.pred_boxes = (
        BitMasks(pred_masks).get_bounding_boxes()
        if len(pred_masks)
        else Boxes(torch.zeros((0, 4), device=pred_masks.device))
    )
    out.scores = results.scores
    out.pred_classes = results.pred_classes
    return out
