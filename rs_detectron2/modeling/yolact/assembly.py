"""YOLACT's masks: a linear combination of prototypes, cropped by a box (Bolya et al., "YOLACT:
Real-time Instance Segmentation", ICCV 2019, Sec. 3.3 and Eq. 1)."""

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["assemble_masks", "crop_masks", "gt_masks_at", "relative_boxes"]


def assemble_masks(protos: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """``sigmoid(P c)`` for every coefficient vector ``c`` (the paper's Eq. 1).

    Args:
        protos: (P, H, W) prototype maps of one image.
        coeffs: (D, P) mask coefficients of D detections (or positives).
    Returns:
        (D, H, W) soft masks in (0, 1) over the whole prototype map.
    """
    num_protos, height, width = protos.shape
    logits = coeffs.to(protos.dtype) @ protos.reshape(num_protos, height * width)
    return logits.sigmoid().reshape(-1, height, width)


def relative_boxes(boxes: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
    """XYXY pixel boxes divided by the image's (height, width): (D, 4) -> (D, 4) in [0, 1] for
    boxes inside the image."""
    height, width = image_size
    return boxes / boxes.new_tensor([width, height, width, height])


def crop_masks(masks: torch.Tensor, boxes_rel: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """Zero every mask outside its box, widened by ``padding`` map pixels on each side.

    A box given relative to the image is scaled to the mask's resolution, its corners ordered,
    widened by ``padding`` and clamped to the map; pixel column ``i`` is kept when
    ``x1 <= i < x2`` (rows likewise), so a box keeps whole pixels between its scaled edges.

    Args:
        masks: (D, H, W) masks.
        boxes_rel: (D, 4) XYXY boxes as fractions of the image's width and height.
        padding: pixels of the mask map added on each side (1 in YOLACT).
    Returns:
        (D, H, W) cropped masks (same dtype; differentiable with respect to ``masks``).
    """
    num, height, width = masks.shape
    scale = boxes_rel.new_tensor([width, height, width, height])
    boxes = boxes_rel * scale
    x1 = (torch.minimum(boxes[:, 0], boxes[:, 2]) - padding).clamp(min=0)
    x2 = (torch.maximum(boxes[:, 0], boxes[:, 2]) + padding).clamp(max=width)
    y1 = (torch.minimum(boxes[:, 1], boxes[:, 3]) - padding).clamp(min=0)
    y2 = (torch.maximum(boxes[:, 1], boxes[:, 3]) + padding).clamp(max=height)
    cols = torch.arange(width, device=masks.device, dtype=boxes.dtype)[None, :]
    rows = torch.arange(height, device=masks.device, dtype=boxes.dtype)[None, :]
    inside_x = (cols >= x1[:, None]) & (cols < x2[:, None])  # (D, W)
    inside_y = (rows >= y1[:, None]) & (rows < y2[:, None])  # (D, H)
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return masks * inside.to(masks.dtype)


def gt_masks_at(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Binary ground-truth masks resized to the prototype resolution, as YOLACT's mask targets:
    bilinear (``align_corners=False``) then ``> 0.5``.

    Args:
        masks: (G, H, W) binary masks covering the whole (padded) input image.
        size: (h, w) of the prototype map.
    Returns:
        (G, h, w) float masks in {0, 1}.
    """
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    resized = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return (resized[:, 0] > 0.5).float()
