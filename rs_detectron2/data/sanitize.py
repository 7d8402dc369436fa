"""Drop degenerate ground truth from Detectron2 dataset dicts before training.

A single bad annotation (a box of zero width, a NaN coordinate, a two-point polygon, a category id
the model has no output for) can crash a run hours in: box regression targets become inf/NaN,
pycocotools refuses the polygon, or a class index overflows the classifier. The rules, per
annotation (crowd or not), in this order; an annotation is dropped for the first rule it breaks:

* ``invalid_bbox``: no ``bbox``, or not 4 numbers (5 for rotated ``XYWHA_ABS`` boxes);
* ``non_finite_bbox``: a NaN or infinite coordinate;
* ``inverted_bbox``: negative width or height (``XYWH``) / ``x1 < x0`` or ``y1 < y0`` (``XYXY``);
* ``zero_area_bbox``: width or height ``<= min_box_size`` (0 by default: exactly zero);
* ``bad_category``: ``category_id`` not an integer in ``[0, num_classes)`` (checked when
  ``num_classes`` is known);
* ``missing_segmentation``: no ``segmentation`` while other annotations of the dataset have one
  (Detectron2's mapper then fails to build the masks of the image);
* ``empty_segmentation``: a polygon list with no usable polygon left. A polygon is usable when it
  has an even number of finite coordinates and at least 3 points; unusable polygons of an annotation
  that keeps at least one usable polygon are removed from it and counted as ``polygons_removed``.
  RLE segmentations (dicts, as in crowd regions) are kept as they are.

Images are never dropped here: an image that loses all its annotations is left for Detectron2's
``filter_empty`` step (``filter_images_with_only_crowd_annotations``), which logs how many images it
removes. Counts per reason are logged (logger ``rs_detectron2.data.sanitize``, a child of
``rs_detectron2``) and returned.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict
from numbers import Integral, Real
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["SANITIZE_REASONS", "sanitize_dataset_dicts", "annotation_problem"]

logger = logging.getLogger(__name__)

SANITIZE_REASONS: Tuple[str, ...] = (
    "invalid_bbox",
    "non_finite_bbox",
    "inverted_bbox",
    "zero_area_bbox",
    "bad_category",
    "missing_segmentation",
    "empty_segmentation",
)
"""Reasons for dropping an annotation, in the order they are checked."""


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _box_problem(bbox, bbox_mode, min_box_size: float) -> Optional[str]:
    from detectron2.structures import BoxMode

    mode = BoxMode(bbox_mode) if bbox_mode is not None else BoxMode.XYWH_ABS
    expected = 5 if mode == BoxMode.XYWHA_ABS else 4
    if not isinstance(bbox, (list, tuple)) or len(bbox) != expected:
        if hasattr(bbox, "tolist"):  # numpy array or tensor
            return _box_problem(bbox.tolist(), bbox_mode, min_box_size)
        return "invalid_bbox"
    if not all(_is_number(v) for v in bbox):
        return "invalid_bbox"
    if not all(math.isfinite(v) for v in bbox):
        return "non_finite_bbox"
    if mode in (BoxMode.XYXY_ABS, BoxMode.XYXY_REL):
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    else:  # XYWH_ABS, XYWH_REL, XYWHA_ABS
        w, h = bbox[2], bbox[3]
    if w < 0 or h < 0:
        return "inverted_bbox"
    if w <= min_box_size or h <= min_box_size:
        return "zero_area_bbox"
    return None


def _usable_polygon(poly) -> bool:
    if not isinstance(poly, (list, tuple)):
        if hasattr(poly, "tolist"):
            return _usable_polygon(poly.tolist())
        return False
    return (
        len(poly) >= 6
        and len(poly) % 2 == 0
        and all(_is_number(v) and math.isfinite(v) for v in poly)
    )


def annotation_problem(
    ann: dict,
    num_classes: Optional[int] = None,
    *,
    min_box_size: float = 0.0,
    require_segmentation: bool = False,
) -> Tuple[Optional[str], Optional[list]]:
    """Why one annotation must be dropped, if it must.

    Args:
        ann: an annotation of a Detectron2 dataset dict (``bbox``, ``bbox_mode``, ``category_id``,
            optional ``segmentation``).
        num_classes: number of classes K; ``category_id`` must then be an int in ``[0, K)``.
            ``None`` skips that check.
        min_box_size: a box side ``<=`` this (pixels) counts as zero area.
        require_segmentation: treat a missing ``segmentation`` as a problem.

    Returns:
        ``(reason, polygons)``: ``reason`` is one of :data:`SANITIZE_REASONS` or ``None`` when the
        annotation is kept; ``polygons`` is the list of usable polygons when some (but not all) of a
        polygon segmentation had to be removed, else ``None`` (keep the segmentation as it is).
    """
    problem = _box_problem(ann.get("bbox"), ann.get("bbox_mode"), min_box_size)
    if problem is not None:
        return problem, None
    if num_classes is not None:
        cid = ann.get("category_id")
        if not isinstance(cid, Integral) or isinstance(cid, bool) or not 0 <= cid < num_classes:
            return "bad_category", None
    if "segmentation" not in ann:
        return ("missing_segmentation" if require_segmentation else None), None
    segm = ann["segmentation"]
    if isinstance(segm, dict):  # RLE
        return None, None
    if not isinstance(segm, (list, tuple)):
        return "empty_segmentation", None
    usable = [p for p in segm if _usable_polygon(p)]
    if not usable:
        return "empty_segmentation", None
    return None, (usable if len(usable) < len(segm) else None)


def sanitize_dataset_dicts(
    dataset_dicts: Sequence[dict],
    num_classes: Optional[int] = None,
    *,
    min_box_size: float = 0.0,
    dataset_name: str = "",
    log: bool = True,
) -> Tuple[List[dict], Dict[str, int]]:
    """Remove degenerate annotations (see the module docstring for the rules) from dataset dicts.

    Args:
        dataset_dicts: Detectron2 dataset dicts (records with an ``annotations`` list). They are not
            modified: records and annotations that change are copied.
        num_classes: number of classes K of the model (contiguous ids ``0..K-1``); ``None`` skips
            the category check.
        min_box_size: box sides ``<=`` this many pixels count as zero area (default 0).
        dataset_name: used in the log message only.
        log: log the counts (the dataset check reports them itself).

    Returns:
        ``(dicts, counts)``: a new list with one record per input record (none is dropped, even if
        it has no annotation left) and an ordered dict with the number of annotations dropped for
        each reason of :data:`SANITIZE_REASONS` plus ``polygons_removed`` (polygons removed from
        annotations that were kept). Non-zero counts are logged as a warning.
    """
    require_segm = any("segmentation" in a for d in dataset_dicts for a in d.get("annotations", ()))
    counts: "OrderedDict[str, int]" = OrderedDict((r, 0) for r in SANITIZE_REASONS)
    counts["polygons_removed"] = 0
    examples: Dict[str, object] = {}
    out = []
    for record in dataset_dicts:
        anns = record.get("annotations")
        if not anns:
            out.append(record)
            continue
        kept, changed = [], False
        for ann in anns:
            reason, polygons = annotation_problem(
                ann, num_classes, min_box_size=min_box_size, require_segmentation=require_segm
            )
            if reason is not None:
                counts[reason] += 1
                examples.setdefault(reason, record.get("image_id", record.get("file_name")))
                changed = True
                continue
            if polygons is not None:
                counts["polygons_removed"] += len(ann["segmentation"]) - len(polygons)
                ann = dict(ann, segmentation=polygons)
                changed = True
            kept.append(ann)
        if changed:
            record = copy.copy(record)
            record["annotations"] = kept
        out.append(record)

    total = sum(counts[r] for r in SANITIZE_REASONS)
    if log:
        _log_counts(counts, examples, total, dataset_dicts, dataset_name)
    return out, dict(counts)


def _log_counts(counts, examples, total: int, dataset_dicts, dataset_name: str) -> None:
    where = f" of '{dataset_name}'" if dataset_name else ""
    if not (total or counts["polygons_removed"]):
        logger.info(f"Ground truth{where}: no degenerate annotation found.")
        return
    details = ", ".join(
        f"{v} {k}" + (f" (first in image {examples[k]})" if k in examples else "")
        for k, v in counts.items()
        if v
    )
    num = sum(len(d.get("annotations", ())) for d in dataset_dicts)
    logger.warning(
        f"Sanitised the ground truth{where}: dropped {total} of {num} annotations: {details}."
    )
