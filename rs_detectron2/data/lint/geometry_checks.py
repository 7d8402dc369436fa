"""Geometry checks of annotations: boxes against the image, boxes against their own masks, masks
of zero area and RLE masks of another size than the image.

What is an error and what a warning (see :mod:`rs_detectron2.data.lint.findings`):

* a box entirely outside its image (error): Detectron2 clips it to nothing and drops the object
  without a word; it usually means the coordinates or the image size are wrong;
* a box partly outside its image, by more than one pixel (warning): Detectron2 clips it;
* a polygon or RLE mask far from its own box (error): the box and the mask head would learn
  contradictory targets. Typical causes: boxes written as ``[x0, y0, x1, y1]`` instead of COCO's
  ``[x, y, width, height]``, or polygons in normalised coordinates;
* a mask of (almost) zero area (warning): the object's mask target is empty;
* an RLE mask whose ``size`` is not the image's ``[height, width]`` (error): the masks do not
  line up with the image (or cannot be stacked at all).

Crowd annotations are skipped (training ignores them), except for the RLE size. Annotations that
the sanitiser drops anyway (:mod:`rs_detectron2.data.sanitize`) are not checked again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..sanitize import annotation_problem
from .findings import ERROR, WARNING, Finding, examples

__all__ = ["ImageRecord", "check_geometry"]

_OUTSIDE_TOLERANCE = 1.0  # px a box may exceed the image by (rounding) without a finding
_MIN_MASK_AREA = 0.5  # px^2: below this a mask rasterises to no pixel
_MIN_IOU = 0.5  # a mask's extent and its box overlap at least this much ...
_MAX_SHIFT = 2.0  # ... or differ by at most this many px on every side

Box = Tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class ImageRecord:
    """What the geometry and image checks need of one image: its id, file, and the size that the
    annotation file declares."""

    image_id: Optional[int]
    file: Optional[str]
    height: int
    width: int


def _iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _far_apart(mask_box: Box, box: Box) -> bool:
    shift = max(abs(u - v) for u, v in zip(mask_box, box, strict=True))
    return shift > _MAX_SHIFT and _iou(mask_box, box) < _MIN_IOU


def _polygon_extent_area(segm: list) -> Tuple[Optional[Box], float]:
    xs, ys, area = [], [], 0.0
    for poly in segm:
        px, py = [float(v) for v in poly[0::2]], [float(v) for v in poly[1::2]]
        xs += px
        ys += py
        n = len(px)
        area += 0.5 * abs(sum(px[i] * py[(i + 1) % n] - px[(i + 1) % n] * py[i] for i in range(n)))
    if not xs:
        return None, 0.0
    return (min(xs), min(ys), max(xs), max(ys)), area


def _rle_extent_area(segm: dict) -> Tuple[Optional[Box], float]:
    from pycocotools import mask as mask_utils

    h, w = segm["size"]
    rle = mask_utils.frPyObjects(segm, h, w) if isinstance(segm["counts"], list) else segm
    area = float(mask_utils.area(rle))
    if area <= 0:
        return None, 0.0
    x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
    return (x, y, x + bw, y + bh), area


@dataclass
class _Collector:
    """Examples per kind of finding, turned into one grouped finding per kind."""

    dataset: str
    where: str  # the annotation file (or dataset name) for messages
    items: Dict[str, List[Tuple[Optional[int], ImageRecord, str]]] = field(default_factory=dict)

    def add(self, code: str, ann_id: Optional[int], image: ImageRecord, detail: str) -> None:
        self.items.setdefault(code, []).append((ann_id, image, detail))

    def finding(self, code: str, severity: str, what: str, fix: str) -> List[Finding]:
        items = self.items.get(code)
        if not items:
            return []
        shown = examples(
            f"annotation {a} in {os.path.basename(im.file or '') or im.image_id} ({d})"
            for a, im, d in items
        )
        ann_id, image, _ = items[0]
        message = f"{self.where}: {len(items)} annotations {what}, e.g. {shown}."
        return [
            Finding(
                severity,
                self.dataset,
                message,
                fix,
                image.file,
                ann_id,
                image.image_id,
                len(items),
                code,
            )
        ]


def _fmt_box(b: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in b) + "]"


def _check_box(col: _Collector, ann_id, image: ImageRecord, box: Box) -> None:
    x0, y0, x1, y1 = box
    h, w, t = image.height, image.width, _OUTSIDE_TOLERANCE
    size = f"box {_fmt_box(box)} (x0, y0, x1, y1), image {w} x {h}"
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        col.add("box_outside_image", ann_id, image, size)
    elif x0 < -t or y0 < -t or x1 > w + t or y1 > h + t:
        col.add("box_partly_outside_image", ann_id, image, size)


def _check_mask(col: _Collector, ann: dict, image: ImageRecord, box: Box) -> None:
    segm, ann_id = ann["segmentation"], ann.get("id")
    if isinstance(segm, dict):
        size = list(segm.get("size", []))
        if size != [image.height, image.width]:
            col.add(
                "rle_size",
                ann_id,
                image,
                f"RLE size {size}, image {image.height} x {image.width} (height x width)",
            )
            return
        if ann.get("iscrowd"):
            return
        extent, area = _rle_extent_area(segm)
    elif ann.get("iscrowd"):
        return
    else:
        extent, area = _polygon_extent_area(segm)
    if area < _MIN_MASK_AREA or extent is None:
        col.add("mask_zero_area", ann_id, image, f"mask area {area:g} px^2")
    elif _far_apart(extent, box):
        col.add(
            "mask_outside_box",
            ann_id,
            image,
            f"box {_fmt_box(box)}, mask extent {_fmt_box(extent)} (x0, y0, x1, y1)",
        )
        xyxy = (box[0], box[1], box[2] - box[0], box[3] - box[1])  # the box read as XYXY
        if xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1] and _iou(extent, xyxy) > 0.9:
            col.add("box_looks_xyxy", ann_id, image, "")
        if max(extent) <= 1.0:
            col.add("mask_looks_normalised", ann_id, image, "")


def _mask_outside_fix(col: _Collector) -> str:
    if len(col.items.get("box_looks_xyxy", ())) * 2 > len(col.items["mask_outside_box"]):
        return (
            "the boxes look like [x0, y0, x1, y1]: COCO's 'bbox' is [x, y, width, height] "
            "(convert them: width = x1 - x0, height = y1 - y0)"
        )
    if len(col.items.get("mask_looks_normalised", ())) * 2 > len(col.items["mask_outside_box"]):
        return "the polygons look normalised to [0, 1]: COCO uses pixel coordinates"
    return "recompute each 'bbox' from its mask, or fix the mask coordinates (pixels)"


def _grouped_findings(col: _Collector) -> List[Finding]:
    """One finding per kind collected, in a fixed order, with its severity and fix."""
    out = col.finding(
        "box_outside_image",
        ERROR,
        "have a box entirely outside their image "
        "(Detectron2 would clip it to nothing and drop the object)",
        "check the box coordinates and the images' 'width' and 'height'",
    )
    out += col.finding(
        "box_partly_outside_image",
        WARNING,
        "have a box that extends beyond their image by more than 1 px (Detectron2 clips it)",
        "clip the boxes to the image",
    )
    if "mask_outside_box" in col.items:
        out += col.finding(
            "mask_outside_box",
            ERROR,
            "have a mask far from their own box (the "
            "box and mask heads would learn contradictory targets)",
            _mask_outside_fix(col),
        )
    out += col.finding(
        "mask_zero_area",
        WARNING,
        "have a mask of (almost) zero area (an empty mask target)",
        "fix the polygon or remove the segmentation",
    )
    out += col.finding(
        "rle_size",
        ERROR,
        "have an RLE mask whose 'size' is not their image's "
        "[height, width] (the masks would not line up with the image)",
        "encode each mask at its image's size",
    )
    return out


def check_geometry(
    images: Dict[int, ImageRecord],
    annotations: Sequence[dict],
    *,
    dataset: str = "",
    where: str = "",
) -> List[Finding]:
    """Check every annotation's box and mask against its image and against each other.

    Args:
        images: image id -> :class:`ImageRecord` (declared height and width).
        annotations: COCO-format annotations (``id``, ``image_id``, ``bbox`` as ``[x, y, width,
            height]`` in pixels, optional ``segmentation`` and ``iscrowd``); annotations of
            unknown images and annotations the sanitiser drops are skipped.
        dataset, where: dataset name and file (or name) used in the findings' messages.

    Returns:
        list of Finding: one per kind of problem (see the module docstring), with the count, up to
        five examples (annotation id, image file, the numbers) and the fix.
    """
    col = _Collector(dataset, where or dataset)
    for ann in annotations:
        image = images.get(ann.get("image_id"))
        if image is None or annotation_problem(ann, None)[0] is not None:
            continue
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        box = (x, y, x + bw, y + bh)
        if not ann.get("iscrowd"):
            _check_box(col, ann.get("id"), image, box)
        if ann.get("segmentation"):
            _check_mask(col, ann, image, box)
    return _grouped_findings(col)
