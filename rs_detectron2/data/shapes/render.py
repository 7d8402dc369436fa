"""Planning and rendering the images of the shapes dataset.

Every annotation polygon is exactly the region that was painted: the class outline, scaled,
rotated, clipped to the image and rounded to 0.01 px, is rasterised with pycocotools and that mask
is filled with the instance colour. A later object may hide a small part of an earlier one: each
placement keeps every earlier object at least 85 % visible and overlaps the union of the earlier
objects by at most 12 % of its own area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .geometry import UNIT_OUTLINES, clip_to_rect, dedupe, rasterize, shoelace
from .spec import SHAPE_CLASS_SPECS, round_half_up

__all__ = ["MAX_OBJECTS", "class_targets", "plan_split", "render_image"]

MAX_OBJECTS = 4
"""Objects per image at most, hence also distinct classes per image at most."""

_MIN_VAL_IMAGES_PER_CLASS = 3  # so that APr/APc are measurable on the small val split
_MAX_HIDDEN = 0.12  # of a new object's pixels that may cover earlier objects
_MIN_VISIBLE = 0.85  # of each earlier object's pixels that must stay visible


def class_targets(num_images: int, split: str) -> List[int]:
    """Target number of images per class for a split of ``num_images`` images ("train" or "val"),
    before capacity limits, in ``SHAPE_CLASS_SPECS`` order."""
    targets = []
    for spec in SHAPE_CLASS_SPECS:
        n = max(1, round_half_up(spec.image_fraction * num_images))
        if split == "val":
            n = max(n, _MIN_VAL_IMAGES_PER_CLASS)
        targets.append(min(n, num_images))
    return targets


def plan_split(rng: np.random.Generator, num_images: int, split: str) -> List[List[int]]:
    """Class indices to draw in each image of a split.

    Each image's list holds first one instance per class present in the image, then extra
    instances of present classes, at most :data:`MAX_OBJECTS` objects in all.
    """
    targets = class_targets(num_images, split)
    present: List[List[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images, dtype=np.int64)
    # Rarest first, each class on the least-loaded images (random tie-break), so rare classes always
    # find room and frequent classes fill the images left empty.
    for k in sorted(range(len(SHAPE_CLASS_SPECS)), key=lambda k: (targets[k], k)):
        order = rng.permutation(num_images)
        order = order[np.argsort(load[order], kind="stable")]
        chosen = [int(i) for i in order if load[i] < MAX_OBJECTS][: targets[k]]
        for i in chosen:
            present[i].append(k)
            load[i] += 1
    plans = []
    for i in range(num_images):
        classes = sorted(present[i]) or [0]
        classes = [classes[j] for j in rng.permutation(len(classes))]
        total = int(rng.integers(len(classes), MAX_OBJECTS + 1))
        extra = [classes[int(j)] for j in rng.integers(0, len(classes), size=total - len(classes))]
        plans.append(classes + extra)
    return plans


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Light, smoothly shaded background (H, W, 3) float64 in [0, 255]."""
    base = rng.uniform(200.0, 240.0, size=3)
    ys = np.arange(height, dtype=np.float64) / max(height - 1, 1)
    xs = np.arange(width, dtype=np.float64) / max(width - 1, 1)
    gx, gy = rng.uniform(-12.0, 12.0, size=2)
    fx, fy = rng.uniform(1.0, 3.0, size=2)
    ph = rng.uniform(0.0, 2.0 * np.pi, size=2)
    shade = (gy * (ys - 0.5))[:, None] + (gx * (xs - 0.5))[None, :]
    waves = np.sin(2 * np.pi * fy * ys + ph[1])[:, None] * np.sin(2 * np.pi * fx * xs + ph[0])
    shade = shade + 4.0 * waves
    return np.clip(base[None, None, :] + shade[:, :, None], 0.0, 255.0)


@dataclass
class _Canvas:
    """An image being painted: pixels, the top-most object per pixel and the objects so far."""

    img: np.ndarray  # (H, W, 3) float64
    top: np.ndarray  # (H, W) int64, -1 where no object
    full_area: List[int] = field(default_factory=list)  # pixels of each object when painted
    objects: List[Tuple[int, List[float], float]] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.top.shape[0]

    @property
    def width(self) -> int:
        return self.top.shape[1]


def _random_pose(rng, k: int, attempt: int, canvas: _Canvas) -> Tuple[np.ndarray, np.ndarray]:
    """A random scale, rotation and position of class ``k``; smaller after every 8 attempts.

    Returns the unclipped outline and the outline clipped to the image, rounded to 0.01 px.
    """
    spec = SHAPE_CLASS_SPECS[k]
    h, w = canvas.height, canvas.width
    shrink = 0.93 ** (attempt // 8)
    radius = rng.uniform(0.10, 0.22) * float(min(h, w)) * spec.size_factor * shrink
    theta = rng.uniform(0.0, 2.0 * np.pi)
    c, s = math.cos(theta), math.sin(theta)
    pts = (UNIT_OUTLINES[spec.name] * radius) @ np.array([[c, s], [-s, c]])
    half = np.abs(pts).max(axis=0)  # (hx, hy)
    # at most 20 % of the half-extent may leave the image
    cx = rng.uniform(0.8 * half[0], w - 0.8 * half[0]) if w > 1.6 * half[0] else w / 2
    cy = rng.uniform(0.8 * half[1], h - 0.8 * half[1]) if h > 1.6 * half[1] else h / 2
    return pts, dedupe(np.round(clip_to_rect(pts + np.array([cx, cy]), w, h), 2))


def _occlusion_ok(canvas: _Canvas, mask: np.ndarray, n: int) -> bool:
    """Whether painting ``mask`` (``n`` pixels) keeps the occlusion limits of the module doc."""
    covered = canvas.top[mask]
    if np.count_nonzero(covered >= 0) > _MAX_HIDDEN * n:
        return False
    if canvas.objects:
        hidden = np.bincount(covered[covered >= 0], minlength=len(canvas.objects))
        visible = np.bincount(canvas.top[canvas.top >= 0], minlength=len(canvas.objects))
        if np.any(visible - hidden < _MIN_VISIBLE * np.asarray(canvas.full_area)):
            return False
    return True


def _place(rng, k: int, attempts: int, canvas: _Canvas, min_pixels: float):
    """Try up to ``attempts`` poses of class ``k``; returns ``(flat polygon, area, mask, pixels)``
    of the first that is large enough, mostly inside the image and not too occluding, or None."""
    for attempt in range(attempts):
        pts, poly = _random_pose(rng, k, attempt, canvas)
        if len(poly) < 3:
            continue
        area = shoelace(poly)
        if area < 0.75 * shoelace(pts) or area < min_pixels:
            continue
        flat = [float(v) for v in poly.reshape(-1)]
        mask = rasterize(flat, canvas.height, canvas.width)
        n = int(mask.sum())
        if n >= min_pixels and _occlusion_ok(canvas, mask, n):
            return flat, area, mask, n
    return None


def render_image(rng: np.random.Generator, plan: Sequence[int], height: int, width: int):
    """Render one image with the classes of ``plan`` (see :func:`plan_split`).

    An object that cannot be placed (it would be tiny or too occluded) is skipped.

    Returns:
        ``(image, objects)``: a uint8 (H, W, 3) RGB image and a list of ``(class index, flat
        polygon [x0, y0, x1, y1, ...], polygon area)`` in drawing order.
    """
    canvas = _Canvas(_background(rng, height, width), np.full((height, width), -1, np.int64))
    n_required = len(set(plan))
    min_pixels = max(64.0, 0.008 * height * width)
    for obj_idx, k in enumerate(plan):
        required = obj_idx < n_required  # first instance of a class planned for this image
        placed: Optional[tuple] = _place(rng, k, 80 if required else 25, canvas, min_pixels)
        if placed is None:
            continue
        flat, area, mask, n = placed
        jitter = rng.integers(-15, 16, size=3)
        canvas.img[mask] = np.clip(np.asarray(SHAPE_CLASS_SPECS[k].colour) + jitter, 0, 255)
        canvas.top[mask] = len(canvas.objects)
        canvas.full_area.append(n)
        canvas.objects.append((k, flat, area))
    return np.round(canvas.img).astype(np.uint8), canvas.objects
