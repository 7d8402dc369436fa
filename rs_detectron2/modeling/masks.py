"""Instance masks of the models whose masks cover the whole image instead of a box (SOLOv2,
YOLACT): the ground truth rasterised on the input canvas, and soft predicted masks turned into the
binary masks of the output image."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detectron2.structures import BitMasks, Instances, PolygonMasks

__all__ = ["crop_canvas_masks", "rasterize_gt_masks", "resize_full_image_masks"]


def rasterize_gt_masks(instances: Instances, size: Tuple[int, int]) -> Tensor:
    """The ground-truth masks of one image on an (H, W) canvas whose top-left part is the image.

    Args:
        instances: the image's ground truth with ``gt_masks`` (:class:`PolygonMasks`,
            :class:`BitMasks` or a (G, h, w) tensor at the image size) and ``gt_boxes``.
        size: (H, W): the image's own size, or the padded batch's.
    Returns:
        (G, H, W) bool on the device of ``gt_boxes``: polygons drawn at that size, bitmasks
        zero-padded (or cropped) to it.
    """
    masks = instances.gt_masks
    height, width = size
    if isinstance(masks, PolygonMasks):
        tensor = BitMasks.from_polygon_masks(masks, height, width).tensor
    else:
        tensor = masks.tensor if isinstance(masks, BitMasks) else torch.as_tensor(masks)
        # a negative pad crops
        tensor = F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]))
    return tensor.to(device=instances.gt_boxes.device, dtype=torch.bool)


def crop_canvas_masks(masks: Tensor, canvas_size: Tuple[int, int], image_size: Tuple[int, int]):
    """Soft masks that cover a padded canvas (at any resolution), as masks of the image in it.

    Args:
        masks: (D, h, w) soft masks covering the whole canvas.
        canvas_size: (H, W) of the padded canvas; image_size: (h_img, w_img), its top-left part.
    Returns:
        (D, h_img, w_img) soft masks: bilinear upsampling to the canvas, then the image's part.
    """
    if len(masks) == 0:
        return masks.new_zeros((0, image_size[0], image_size[1]))
    masks = F.interpolate(masks[:, None], size=canvas_size, mode="bilinear", align_corners=False)
    return masks[:, 0, : image_size[0], : image_size[1]]


def resize_full_image_masks(
    masks: Tensor,
    output_size: Tuple[int, int],
    threshold: float = 0.5,
    *,
    canvas_size: Optional[Tuple[int, int]] = None,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    """Binary masks of the output image from soft masks that cover the whole image, where
    Detectron2's ``detector_postprocess`` would paste box-relative RoI masks.

    Args:
        masks: (D, h, w) soft masks covering the image (any resolution), or with
            ``canvas_size``, covering the padded canvas (:func:`crop_canvas_masks` first).
        output_size: (H, W) of the output image.
        threshold: soft masks above it are foreground.
        canvas_size, image_size: see :func:`crop_canvas_masks`.
    Returns:
        (D, H, W) bool: bilinear resizing to the output size, then the threshold.
    """
    if len(masks) == 0:
        return torch.zeros((0, *output_size), dtype=torch.bool, device=masks.device)
    if canvas_size is not None:
        masks = crop_canvas_masks(masks, canvas_size, image_size)
    size = tuple(output_size)
    masks = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return masks[:, 0] > threshold
