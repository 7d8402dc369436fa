"""Which anchors lie on an image rather than on its batch padding (mmdetection's valid flags)."""

from typing import List, Sequence, Tuple

import torch

from detectron2.structures import Boxes

__all__ = ["MMDET_PAD_DIVISOR", "valid_anchor_mask"]

#: mmdetection pads every image to a multiple of 32 (``Pad(size_divisor=32)``) before batching;
#: anchors are valid on that padded image, not only on the image itself
MMDET_PAD_DIVISOR = 32


def valid_anchor_mask(
    anchors: List[Boxes],
    strides: Sequence[int],
    offset: float,
    image_size: Tuple[int, int],
    size_divisor: int = MMDET_PAD_DIVISOR,
) -> torch.Tensor:
    """The anchors of one image that mmdetection's anchor heads (the RS paper's RPN, ATSS and PAA
    heads) label; the others, whose location is in the padding added to batch images of
    different sizes, are left out of assignment and ignored by the loss (Detectron2 labels them,
    mostly as negatives).

    A location x of a level with stride s is valid if ``x * s < W_pad`` (likewise y with
    ``H_pad``), where ``(H_pad, W_pad)`` is ``image_size`` rounded up to ``size_divisor``: the
    first ``ceil(W_pad / s)`` columns, as mmdetection's ``AnchorGenerator.valid_flags`` on the
    image's ``pad_shape``. Every anchor of a location shares its validity.

    Args:
        anchors: per-level Boxes of a :class:`~detectron2.modeling.anchor_generator.
            DefaultAnchorGenerator` (centred on ``(x + offset) * s``), R anchors in total.
        strides: the stride of each level.
        offset: the generator's ``offset``.
        image_size: (h, w) of the image without the batch padding.
        size_divisor: the per-image padding multiple whose area still counts as valid (1: only
            locations on the image itself).
    Returns:
        (R,) bool, True for valid anchors, level after level as ``anchors``.
    """
    height, width = (-(-int(v) // size_divisor) * size_divisor for v in image_size)
    masks = []
    for boxes, stride in zip(anchors, strides, strict=True):
        # the location's top-left corner x * s; locations are whole multiples of s and the padded
        # size is whole, so comparing with half a pixel less is exact despite float centres
        corner = boxes.get_centers() - offset * stride
        masks.append((corner[:, 0] < width - 0.5) & (corner[:, 1] < height - 0.5))
    return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)
