"""SSD's geometric augmentations (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016,
section 2.2 "Data augmentation" and section 3.6, the "zoom out" for small objects): placing the
image on a larger mean-filled canvas (:class:`Expand`) and cropping a patch that overlaps the
objects by a minimum IoU (:class:`MinIoURandomCrop`), as used by the YOLACT and aLRP recipes of
docs/models.md.

Boxes are (N, 4) XYXY_ABS arrays and polygons (K, 2) arrays of (x, y) in pixels, as Detectron2's
transforms expect.
"""

from typing import List, Sequence, Union

import numpy as np
import torch
from fvcore.transforms.transform import CropTransform, NoOpTransform, PadTransform, Transform

from detectron2.data import transforms as T
from detectron2.structures import Boxes, pairwise_iou

__all__ = [
    "ClipCropTransform",
    "Expand",
    "ExpandTransform",
    "MinIoURandomCrop",
    "box_centres_inside",
    "clip_polygon",
]


class ExpandTransform(PadTransform):
    """Pads ``x0, y0`` pixels on the left / top and ``x1, y1`` on the right / bottom, filling the
    image with ``pad_value`` (a scalar or one value per channel, e.g. the pixel mean) and
    segmentations with ``seg_pad_value``. Coordinates shift by ``(x0, y0)``; the inverse is a crop.

    Detectron2's :class:`PadTransform` fills every channel with one scalar; this one takes a
    per-channel fill. For uint8 images the fill is rounded to the nearest integer.
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """
        Args:
            img: (H, W, C) or (H, W) image, uint8 or float.

        Returns:
            (H + y0 + y1, W + x0 + x1[, C]) canvas of the same dtype, with ``img`` at
            ``[y0:y0 + H, x0:x0 + W]``.
        """
        h, w = img.shape[:2]
        fill = np.asarray(self.pad_value, dtype=np.float64)
        if img.dtype == np.uint8:
            fill = np.clip(np.rint(fill), 0, 255)
        canvas = np.empty((h + self.y0 + self.y1, w + self.x0 + self.x1) + img.shape[2:], img.dtype)
        canvas[...] = fill.astype(img.dtype)
        canvas[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return canvas


class Expand(T.Augmentation):
    """SSD's "zoom out": with probability ``prob``, place the image at a random position on a
    canvas ``ratio`` times its size (ratio uniform in ``ratio_range``), filled with ``fill``.

    ``fill`` should be the model's pixel mean in the model's input channel order, so the canvas
    is zero after normalisation. Returns an :class:`ExpandTransform` or a no-op.
    """

    def __init__(
        self,
        fill: Union[float, Sequence[float]],
        ratio_range: Sequence[float] = (1.0, 4.0),
        prob: float = 0.5,
    ):
        """
        Args:
            fill: canvas value, a scalar or one value per channel (0-255 scale).
            ratio_range: (low, high) of the canvas side / image side, low >= 1.
            prob: probability of expanding.
        """
        super().__init__()
        if ratio_range[0] < 1.0 or ratio_range[1] < ratio_range[0]:
            raise ValueError(f"ratio_range must satisfy 1 <= low <= high, got {ratio_range}")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        """
        Args:
            image: (H, W, C) or (H, W) image; only its shape is read.

        Returns:
            An :class:`ExpandTransform` to an (int(H * ratio), int(W * ratio)) canvas, or a no-op.
        """
        if self._rand_range() >= self.prob:
            return NoOpTransform()
        h, w = image.shape[:2]
        ratio = self._rand_range(*self.ratio_range)
        new_h, new_w = max(h, int(h * ratio)), max(w, int(w * ratio))
        left = int(self._rand_range(0, new_w - w))
        top = int(self._rand_range(0, new_h - h))
        return ExpandTransform(
            left, top, new_w - w - left, new_h - h - top, orig_w=w, orig_h=h, pad_value=self.fill
        )


def _clip_half_plane(poly: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """One Sutherland-Hodgman step: the part of the closed polygon ``poly`` (K, 2) on one side of
    the line ``coordinate[axis] = bound``."""
    if len(poly) == 0:
        return poly
    nxt = np.roll(poly, -1, axis=0)
    sign = 1.0 if keep_above else -1.0
    d_cur = sign * (poly[:, axis] - bound)
    d_nxt = sign * (nxt[:, axis] - bound)
    in_cur, in_nxt = d_cur >= 0, d_nxt >= 0
    cross = in_cur != in_nxt
    t = np.divide(d_cur, d_cur - d_nxt, out=np.zeros_like(d_cur), where=cross)
    inter = poly + t[:, None] * (nxt - poly)
    inter[:, axis] = bound
    # Each edge cur -> nxt emits its crossing point (if any), then nxt (if inside).
    points = np.stack([inter, nxt], axis=1)
    emit = np.stack([cross, in_nxt], axis=1)
    return points[emit]


def clip_polygon(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Clip a polygon to the rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman).

    A concave polygon that the rectangle cuts into several pieces comes back as one polygon whose
    pieces are joined by zero-area edges along the rectangle's border; its area and rasterisation
    are those of the pieces.

    Args:
        polygon: (K, 2) array of (x, y) vertices.
        x0, y0, x1, y1: the clipping rectangle.

    Returns:
        (M, 2) float array of the clipped polygon's vertices, M = 0 when nothing is inside.
    """
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        poly = _clip_half_plane(poly, axis, bound, keep_above)
    return poly


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


class ClipCropTransform(CropTransform):
    """A :class:`CropTransform` that clips polygons to the crop window with :func:`clip_polygon`
    (fvcore's version needs shapely, which this library does not depend on). Polygons left with
    no area are dropped, as fvcore does."""

    def apply_polygons(self, polygons: list) -> List[np.ndarray]:
        """
        Args:
            polygons: list of (K, 2) arrays of (x, y) in the uncropped image.

        Returns:
            list of (M, 2) arrays in the cropped image; polygons outside the crop are removed.
        """
        x1, y1 = self.x0 + self.w, self.y0 + self.h
        clipped = [clip_polygon(p, self.x0, self.y0, x1, y1) for p in polygons]
        kept = [p for p in clipped if len(p) >= 3 and _polygon_area(p) > 0.0]
        return [self.apply_coords(p) for p in kept]


def box_centres_inside(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Which box centres lie strictly inside the rectangle (x0, x1) x (y0, y1).

    Args:
        boxes: (N, 4) XYXY boxes.
        x0, y0, x1, y1: the rectangle; (T, 1) arrays test T rectangles at once.

    Returns:
        (N,) bool array, or (T, N) for T rectangles.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)


class MinIoURandomCrop(T.MinIoURandomCrop):
    """SSD's random crop: draw a mode from {keep the image, *min_ious, 0}; for up to
    ``crop_trials`` tries draw a crop with sides ``min_crop_size``-1 of the image's and aspect
    h / w in ``aspect_ratio_range``, and accept it when its IoU with every box is >= the mode's
    threshold and at least one box centre is strictly inside it; when all tries fail, draw a new
    mode (at most ``mode_trials`` times, then keep the image).

    Instances whose box centre falls outside the crop must be dropped afterwards:
    :class:`~rs_detectron2.data.transforms.SSDDatasetMapper` does that. Detectron2's own class
    checks a rounded patch that can differ by a pixel from the crop it returns, and needs
    shapely to crop polygons; this one checks exactly the crop it returns, a
    :class:`ClipCropTransform`, and records the drawn threshold in ``self.mode`` (1 = keep).
    """

    def __init__(
        self,
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size: float = 0.3,
        mode_trials: int = 1000,
        crop_trials: int = 50,
        aspect_ratio_range: Sequence[float] = (0.5, 2.0),
    ):
        """
        Args:
            min_ious: the IoU thresholds of the modes besides "keep" (1) and "any crop" (0).
            min_crop_size: smallest crop side as a fraction of the image side.
            mode_trials: how many modes to draw before giving up and keeping the image.
            crop_trials: crops tried per mode.
            aspect_ratio_range: allowed (low, high) of crop height / crop width.
        """
        super().__init__(
            min_ious=tuple(min_ious),
            min_crop_size=min_crop_size,
            mode_trials=mode_trials,
            crop_trials=crop_trials,
        )
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.mode = 1

    def _draw_crops(self, h: int, w: int) -> np.ndarray:
        """``crop_trials`` candidate crops as (T, 4) integer XYXY windows, invalid ones (aspect
        out of range, or empty after rounding) removed; drawn together to keep the loop cheap."""
        n = self.crop_trials
        new_w = self._rand_range(self.min_crop_size * w, w, size=n)
        new_h = self._rand_range(self.min_crop_size * h, h, size=n)
        left = self._rand_range(0.0, w - new_w, size=n)
        top = self._rand_range(0.0, h - new_h, size=n)
        crops = np.stack([left, top, left + new_w, top + new_h], axis=1).astype(np.int64)
        aspect = new_h / new_w
        valid = (aspect >= self.aspect_ratio_range[0]) & (aspect <= self.aspect_ratio_range[1])
        valid &= (crops[:, 2] > crops[:, 0]) & (crops[:, 3] > crops[:, 1])
        return crops[valid]

    def get_transform(self, image: np.ndarray, boxes: np.ndarray) -> Transform:
        """
        Args:
            image: (H, W, C) or (H, W) image; only its shape is read.
            boxes: (N, 4) XYXY_ABS boxes of the instances, or None (then the image is kept).

        Returns:
            A :class:`ClipCropTransform` or a no-op.
        """
        self.mode = 1
        if boxes is None:
            return NoOpTransform()
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        gt = Boxes(torch.from_numpy(boxes))
        for _ in range(self.mode_trials):
            self.mode = float(np.random.choice(self.sample_mode))
            if self.mode == 1:
                return NoOpTransform()
            crops = self._draw_crops(h, w)
            if len(boxes) and len(crops):
                ious = pairwise_iou(Boxes(torch.from_numpy(crops).float()), gt).numpy()
                inside = box_centres_inside(boxes, *crops.T[:, :, None])  # (T, N)
                ok = (ious.min(axis=1) >= self.mode) & inside.any(axis=1)
                crops = crops[ok]
            if len(crops):
                x0, y0, x1, y1 = (int(v) for v in crops[0])
                return ClipCropTransform(x0, y0, x1 - x0, y1 - y0, orig_w=w, orig_h=h)
        self.mode = 1
        return NoOpTransform()
