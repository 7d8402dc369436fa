"""A DatasetMapper for SSD-style augmentation (Liu et al., "SSD: Single Shot MultiBox Detector",
ECCV 2016, section 2.2), used by the YOLACT and aLRP 512 px recipes (docs/models.md): it gives the
boxes to the augmentations (the min-IoU crop needs them), can drop tiny boxes first, and drops
the instances whose box centre left the image (what SSD's crop keeps is decided by the centre).
"""

import copy
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from fvcore.transforms.transform import Transform

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from .geometry import Expand, MinIoURandomCrop, box_centres_inside
from .photometric import PhotometricDistortion

__all__ = ["SSDDatasetMapper", "centres_inside_image", "ssd_augmentations"]


def ssd_augmentations(
    image_size: Union[int, Tuple[int, int]],
    pixel_mean: Sequence[float],
    image_format: str = "BGR",
    hflip_prob: float = 0.5,
) -> list:
    """The SSD-style training augmentations of the YOLACT (550 x 550) and aLRP (512 x 512)
    recipes, in their order: photometric distortion, expand (1-4x, filled with the pixel mean),
    min-IoU random crop, resize to ``image_size`` without keeping the aspect ratio, horizontal
    flip. Use them with :class:`SSDDatasetMapper`.

    Args:
        image_size: (height, width) of the network input, or one int for a square.
        pixel_mean: the model's pixel mean in ``image_format`` channel order (0-255 scale).
        image_format: the mapper's image format, "BGR" or "RGB".
        hflip_prob: probability of the horizontal flip.

    Returns:
        list of Detectron2 augmentations.
    """
    return [
        PhotometricDistortion(image_format=image_format),
        Expand(fill=tuple(float(m) for m in pixel_mean)),
        MinIoURandomCrop(),
        # Detectron2's Resize((h, w)) already resizes to exactly (h, w), ignoring aspect ratio.
        T.Resize(image_size),
        T.RandomFlip(prob=hflip_prob, horizontal=True),
    ]


def centres_inside_image(
    boxes: np.ndarray, transforms: Transform, image_size: Tuple[int, int]
) -> np.ndarray:
    """Which boxes keep their centre strictly inside the augmented image.

    The centre is mapped through ``transforms``; for crops, pads, resizes and flips this is the
    centre of the transformed box before it is clipped, so a box is kept exactly when its centre
    was inside the crop window.

    Args:
        boxes: (N, 4) XYXY_ABS boxes in the original image.
        transforms: the transforms applied to the image (a TransformList).
        image_size: (height, width) of the augmented image.

    Returns:
        (N,) bool array.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    centres = transforms.apply_coords(centres.copy())
    h, w = image_size
    return box_centres_inside(np.concatenate([centres, centres], axis=1), 0, 0, w, h)


class SSDDatasetMapper(DatasetMapper):
    """Detectron2's :class:`DatasetMapper` for augmentations that need the boxes
    (``get_transform(self, image, boxes)``, e.g. :class:`MinIoURandomCrop`).

    In training it (1) drops crowd annotations and boxes narrower or shorter than
    ``min_box_size``, (2) runs the augmentations on an ``AugInput`` that carries the boxes,
    (3) drops the instances whose box centre is not strictly inside the augmented image, then
    transforms the rest as :class:`DatasetMapper` does (empty boxes and masks are filtered there).
    Images are converted to float32 first when ``float_image`` is set, so the photometric steps
    and the mean fill are not rounded to uint8. Semantic segmentation and precomputed proposals
    are not supported.
    """

    def __init__(
        self,
        is_train: bool = True,
        *,
        min_box_size: float = 0.0,
        float_image: bool = True,
        **kwargs,
    ):
        """
        Args:
            is_train: whether the mapper is used for training.
            min_box_size: boxes with width or height below this (pixels, original image) are
                dropped before augmenting (the YOLACT recipe uses 4).
            float_image: convert images to float32 (0-255) before augmenting.
            kwargs: :class:`DatasetMapper` arguments (``augmentations``, ``image_format``,
                ``use_instance_mask``, ``instance_mask_format``, ``recompute_boxes``, ...).
        """
        super().__init__(is_train, **kwargs)
        if self.proposal_topk is not None:
            raise ValueError("SSDDatasetMapper does not support precomputed proposals")
        self.min_box_size = float(min_box_size)
        self.float_image = bool(float_image)

    def _usable_annotations(self, annotations: list) -> list:
        kept = []
        for anno in annotations:
            if anno.get("iscrowd", 0) != 0:
                continue
            x0, y0, x1, y1 = BoxMode.convert(anno["bbox"], anno["bbox_mode"], BoxMode.XYXY_ABS)
            if x1 - x0 < self.min_box_size or y1 - y0 < self.min_box_size:
                continue
            kept.append(anno)
        return kept

    def __call__(self, dataset_dict: dict) -> dict:
        """
        Args:
            dataset_dict: one image in Detectron2's dataset format.

        Returns:
            dict with "image" (C, H, W) tensor (float32 if ``float_image``, else uint8) and, in
            training, "instances" (gt_boxes, gt_classes, gt_masks when masks are used).
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        if self.float_image:
            image = image.astype(np.float32)

        annotations = None
        boxes = None
        if self.is_train and "annotations" in dataset_dict:
            annotations = self._usable_annotations(dataset_dict.pop("annotations"))
            boxes = np.array(
                [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations],
                dtype=np.float32,
            ).reshape(-1, 4)

        aug_input = T.AugInput(image, boxes=boxes)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if not self.is_train:
            dataset_dict.pop("annotations", None)
            dataset_dict.pop("sem_seg_file_name", None)
            return dataset_dict
        if annotations is not None:
            keep = centres_inside_image(boxes, transforms, image_shape)
            dataset_dict["annotations"] = [a for a, k in zip(annotations, keep) if k]
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
