"""Reading and checking a COCO- or LVIS-format annotation file (the JSON only; the image files
are decoded by :mod:`rs_detectron2.data.lint.image_checks`, the geometry is checked by
:mod:`rs_detectron2.data.lint.geometry_checks`).

Format. A file is LVIS-format when a category has ``frequency`` or an image has
``neg_category_ids`` / ``not_exhaustive_category_ids``; otherwise COCO-format. Images are
``IMAGE_ROOT/file_name``; for LVIS files without ``file_name``, the last two parts of ``coco_url``
under ``IMAGE_ROOT`` (Detectron2's convention for LVIS v1).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

from ..sanitize import annotation_problem
from .findings import ERROR, INFO, WARNING, Finding, examples

__all__ = [
    "UserDatasetError",
    "AnnotationReport",
    "read_annotation_json",
    "detect_format",
    "image_file",
    "inspect_annotations",
    "summary_findings",
]

LVIS_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


class UserDatasetError(ValueError):
    """A dataset given with ``--dataset`` (or to ``register_user_dataset``) cannot be used.

    ``findings`` holds the :class:`~rs_detectron2.data.lint.findings.Finding` objects behind the
    message, when there are any.
    """

    def __init__(self, message: str, findings: Optional[List[Finding]] = None):
        super().__init__(message)
        self.findings = list(findings or [])


def _json_error(json_file: str, what: str) -> UserDatasetError:
    return UserDatasetError(f"Annotation file {json_file} {what}")


def read_annotation_json(json_file: str) -> dict:
    """Read a COCO/LVIS annotation file.

    Args:
        json_file: path of the JSON file.

    Returns:
        dict: the parsed file, checked to be an object with ``images``, ``annotations`` and
        ``categories`` lists.

    Raises:
        UserDatasetError: naming the file and the reason (missing, unreadable, invalid JSON with
        line/column, wrong structure).
    """
    if not os.path.exists(json_file):
        raise _json_error(json_file, "does not exist.")
    if not os.path.isfile(json_file):
        raise _json_error(json_file, "is not a file.")
    try:
        with open(json_file, "rb") as f:
            data = json.load(f)
    except OSError as e:
        raise UserDatasetError(f"Cannot read annotation file {json_file}: {e}") from e
    except UnicodeDecodeError as e:
        raise _json_error(json_file, f"is not UTF-8 text: {e}") from e
    except json.JSONDecodeError as e:
        raise _json_error(
            json_file, f"is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})."
        ) from e
    if not isinstance(data, dict):
        raise _json_error(
            json_file,
            f"holds a JSON {type(data).__name__}, not an object with 'images', 'annotations' and "
            "'categories'.",
        )
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)
    ]
    if missing:
        raise _json_error(
            json_file,
            f"has no {', '.join(repr(k) for k in missing)} list{'s' if len(missing) > 1 else ''} "
            "(COCO and LVIS files have 'images', 'annotations' and 'categories').",
        )
    return data


def detect_format(data: dict) -> str:
    """``"lvis"`` if a category has ``frequency`` or an image has LVIS label lists, else ``"coco"``.

    Args:
        data: a parsed annotation file (see :func:`read_annotation_json`).
    """
    if any(isinstance(c, dict) and "frequency" in c for c in data["categories"]):
        return "lvis"
    images = data["images"]
    if any(isinstance(im, dict) and any(k in im for k in LVIS_IMAGE_KEYS) for im in images):
        return "lvis"
    return "coco"


def image_file(img: dict, image_root: str, fmt: str) -> Optional[str]:
    """Path of an image record's file under ``image_root`` (see the module docstring), or ``None``
    when the record names no file (no ``file_name``, and for LVIS no ``coco_url`` either)."""
    if img.get("file_name"):
        return os.path.join(image_root, img["file_name"])
    if fmt == "lvis" and img.get("coco_url"):
        folder, name = img["coco_url"].rstrip("/").split("/")[-2:]
        return os.path.join(image_root, folder, name)
    return None


def _duplicates(ids: Iterable) -> List:
    return sorted((k for k, v in Counter(ids).items() if v > 1), key=str)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class AnnotationReport:
    """What :func:`inspect_annotations` found in one annotation file.

    ``findings`` with severity ``"error"`` make the dataset unusable; warnings describe data that
    is kept but ignored or dropped later (always with a count).
    """

    json_file: str
    image_root: str
    format: str
    dataset: str = ""
    num_images: int = 0
    num_annotations: int = 0
    category_ids: List[int] = field(default_factory=list)
    thing_classes: List[str] = field(default_factory=list)
    frequencies: List[str] = field(default_factory=list)  # LVIS only, contiguous order
    instances_per_category: Dict[int, int] = field(default_factory=dict)  # by dataset id
    images_per_category: Dict[int, int] = field(default_factory=dict)
    images_without_annotations: int = 0
    image_paths: Dict[int, str] = field(default_factory=dict)  # image id -> file
    missing_images: List[str] = field(default_factory=list)
    degenerate: Dict[str, int] = field(default_factory=dict)  # sanitize reason -> annotations
    rle_masks: int = 0  # non-crowd annotations whose segmentation is RLE (a dict)
    polygon_masks: int = 0  # non-crowd annotations whose segmentation is a polygon list
    findings: List[Finding] = field(default_factory=list)

    def add(self, severity: str, message: str, fix: str = "", **kw) -> None:
        """Append a finding about this file (``message`` gets the file name in front)."""
        kw.setdefault("file", self.json_file)
        self.findings.append(
            Finding(severity, self.dataset, f"{self.json_file}: {message}", fix, **kw)
        )

    @property
    def errors(self) -> List[str]:
        """Messages of the error findings."""
        return [f.message for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> List[str]:
        """Messages of the warning findings."""
        return [f.message for f in self.findings if f.severity == WARNING]

    @property
    def id_map(self) -> Dict[int, int]:
        """Dataset category id -> contiguous id (increasing id order)."""
        return {cid: i for i, cid in enumerate(self.category_ids)}

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def mask_format(self) -> Optional[str]:
        """``"bitmask"`` when a non-crowd segmentation is RLE, ``"polygon"`` when all are
        polygons, None without segmentations (Detectron2's ``instance_mask_format``)."""
        if self.rle_masks:
            return "bitmask"
        return "polygon" if self.polygon_masks else None


def _check_categories(rep: AnnotationReport, cats: list) -> bool:
    """Category ids, names and (LVIS) frequencies; False when the file cannot be read further."""
    bad = [c for c in cats if not isinstance(c, dict) or not _is_int(c.get("id"))]
    if bad:
        rep.add(
            ERROR,
            f"{len(bad)} categories without an integer 'id' (e.g. {examples(bad, 2)}).",
            "give every category an integer 'id'",
            count=len(bad),
            code="category_id",
        )
        return False
    dup = _duplicates(c["id"] for c in cats)
    if dup:
        rep.add(
            ERROR,
            f"duplicate category ids {examples(dup)}.",
            "make category ids unique",
            count=len(dup),
            code="category_duplicate",
        )
    cats = sorted(cats, key=lambda c: c["id"])
    rep.category_ids = [c["id"] for c in cats]
    rep.thing_classes = [str(c.get("name", c["id"])) for c in cats]
    unnamed = [c["id"] for c in cats if "name" not in c]
    if unnamed:
        rep.add(
            WARNING,
            f"{len(unnamed)} categories have no 'name' (their id is used): {examples(unnamed)}.",
            "add a 'name' to every category",
            count=len(unnamed),
            code="category_name",
        )
    if not cats:
        rep.add(
            ERROR,
            "'categories' is empty.",
            "list the classes in 'categories'",
            code="category_empty",
        )
    if rep.format == "lvis":
        rep.frequencies = [c.get("frequency") for c in cats]
        nofreq = [c["id"] for c in cats if c.get("frequency") not in ("f", "c", "r")]
        if nofreq:
            rep.add(
                ERROR,
                f"LVIS format, but {len(nofreq)} categories have no 'frequency' in "
                f"f/c/r (needed for APr/APc/APf), e.g. ids {examples(nofreq)}.",
                "give every category its LVIS 'frequency', or drop the LVIS keys to use the "
                "COCO format",
                count=len(nofreq),
                code="lvis_frequency",
            )
    return True


def _check_image_records(rep: AnnotationReport, images: list, check_files: bool) -> bool:
    """Image ids, sizes, LVIS label lists and files; False when the file cannot be read further."""
    bad = [im for im in images if not isinstance(im, dict) or not _is_int(im.get("id"))]
    if bad:
        rep.add(
            ERROR,
            f"{len(bad)} images without an integer 'id'.",
            "give every image an integer 'id'",
            count=len(bad),
            code="image_id",
        )
        return False
    dup = _duplicates(im["id"] for im in images)
    if dup:
        rep.add(
            ERROR,
            f"duplicate image ids {examples(dup)}.",
            "make image ids unique",
            count=len(dup),
            code="image_duplicate",
        )
    nosize = [
        im["id"] for im in images if not (_is_int(im.get("height")) and _is_int(im.get("width")))
    ]
    if nosize:
        rep.add(
            ERROR,
            f"{len(nosize)} images have no integer 'height'/'width', e.g. ids {examples(nosize)}.",
            "add each image's 'height' and 'width' in pixels",
            count=len(nosize),
            image_id=nosize[0],
            code="image_size_missing",
        )
    if rep.format == "lvis":
        for key in LVIS_IMAGE_KEYS:
            lacking = [im["id"] for im in images if not isinstance(im.get(key), list)]
            if lacking:
                rep.add(
                    ERROR,
                    f"LVIS format, but {len(lacking)} of {len(images)} images have no "
                    f"'{key}' list (LVIS evaluation needs it), e.g. ids {examples(lacking)}.",
                    f"add '{key}' to every image",
                    count=len(lacking),
                    code="lvis_image_lists",
                )
    _locate_files(rep, images)
    if check_files:
        _check_files_exist(rep, len(images))
    return True


def _locate_files(rep: AnnotationReport, images: list) -> None:
    """Fill ``rep.image_paths``; an error for images that name no file."""
    nofile = []
    for im in images:
        p = image_file(im, rep.image_root, rep.format)
        if p is None:
            nofile.append(im["id"])
        else:
            rep.image_paths[im["id"]] = p
    if nofile:
        what = "'file_name' or 'coco_url'" if rep.format == "lvis" else "'file_name'"
        rep.add(
            ERROR,
            f"{len(nofile)} images have no {what}, e.g. ids {examples(nofile)}.",
            f"add {what} to every image",
            count=len(nofile),
            code="image_no_file",
        )


def _check_files_exist(rep: AnnotationReport, num_images: int) -> None:
    rep.missing_images = [p for p in rep.image_paths.values() if not os.path.isfile(p)]
    if rep.missing_images:
        n = len(rep.missing_images)
        rep.add(
            ERROR,
            f"{n} of {num_images} image files are missing under {rep.image_root}, "
            f"e.g. {examples(rep.missing_images)}.",
            "check IMAGE_ROOT: each image's 'file_name' is a path relative to it",
            count=n,
            code="image_missing",
        )


def _check_annotation_ids(rep: AnnotationReport, anns: list) -> None:
    noid = sum(1 for a in anns if "id" not in a)
    if noid:
        rep.add(
            ERROR,
            f"{noid} annotations have no 'id'.",
            "give every annotation a unique 'id'",
            count=noid,
            code="annotation_id",
        )
    dup = _duplicates(a["id"] for a in anns if "id" in a)
    if dup:
        rep.add(
            ERROR,
            f"duplicate annotation ids {examples(dup)}.",
            "make annotation ids unique",
            count=len(dup),
            annotation_id=dup[0],
            code="annotation_duplicate",
        )
    known = set(rep.category_ids)
    unknown = Counter(a.get("category_id") for a in anns if a.get("category_id") not in known)
    if unknown:
        listed = examples(f"{k} ({v} annotations)" for k, v in unknown.most_common())
        first = next(a.get("id") for a in anns if a.get("category_id") not in known)
        rep.add(
            ERROR,
            f"{sum(unknown.values())} annotations use category ids that are not in "
            f"'categories': {listed}.",
            "add these ids to 'categories' or fix the annotations' 'category_id'",
            count=sum(unknown.values()),
            annotation_id=first,
            code="category_unknown",
        )
    if rep.format == "coco":
        empty_box = [a.get("id") for a in anns if isinstance(a.get("bbox"), list) and not a["bbox"]]
        if empty_box:
            rep.add(
                ERROR,
                f"{len(empty_box)} annotations have an empty 'bbox' (Detectron2's COCO "
                "loader rejects the file).",
                "give every annotation its [x, y, width, height] box",
                count=len(empty_box),
                annotation_id=empty_box[0],
                code="bbox_empty",
            )


def _check_annotation_content(rep: AnnotationReport, anns: list, image_ids: set) -> None:
    has_segm = any("segmentation" in a for a in anns)
    degenerate = Counter()
    for a in anns:
        reason, _ = annotation_problem(a, None, require_segmentation=has_segm)
        if reason is not None:
            degenerate[reason] += 1
        segm = a.get("segmentation")
        if not a.get("iscrowd") and segm is not None:
            rep.rle_masks += isinstance(segm, dict)
            rep.polygon_masks += isinstance(segm, list)
    rep.degenerate = dict(degenerate)
    if degenerate:
        n = sum(degenerate.values())
        reasons = ", ".join(f"{v} {k}" for k, v in degenerate.most_common())
        rep.add(
            WARNING,
            f"{n} annotations are degenerate ({reasons}): training drops them "
            "(Detectron2's loader drops polygons of fewer than 3 points, "
            "rs_detectron2.data.sanitize the rest, with counts).",
            "fix or remove them to train on these objects",
            count=n,
            code="degenerate",
        )
    orphans = sum(1 for a in anns if a.get("image_id") not in image_ids)
    if orphans:
        rep.add(
            WARNING,
            f"{orphans} annotations refer to image ids that are not in 'images'; they are ignored.",
            "remove them or add their images",
            count=orphans,
            code="annotation_orphan",
        )
    noarea = sum(1 for a in anns if "area" not in a)
    if noarea:
        rep.add(
            WARNING,
            f"{noarea} annotations have no 'area': training works, COCO/LVIS "
            "evaluation of this file will fail.",
            "add 'area' (the mask area in pixels) to every annotation",
            count=noarea,
            code="annotation_area",
        )


def _count_categories(rep: AnnotationReport, anns: list, image_ids: set) -> None:
    known = set(rep.category_ids)
    inst, img_sets = Counter(), {}
    for a in anns:
        cid = a.get("category_id")
        if cid in known and a.get("image_id") in image_ids:
            inst[cid] += 1
            img_sets.setdefault(cid, set()).add(a["image_id"])
    rep.instances_per_category = {cid: inst.get(cid, 0) for cid in rep.category_ids}
    rep.images_per_category = {cid: len(img_sets.get(cid, ())) for cid in rep.category_ids}
    annotated = {a.get("image_id") for a in anns}
    rep.images_without_annotations = sum(1 for i in image_ids if i not in annotated)
    if rep.images_without_annotations:
        rep.add(
            WARNING,
            f"{rep.images_without_annotations} of {rep.num_images} images have no "
            "annotation: kept for evaluation; training drops them (Detectron2's "
            "filter_empty, which logs the count).",
            count=rep.images_without_annotations,
            code="image_unannotated",
        )


def inspect_annotations(
    data: dict,
    json_file: str,
    image_root: str,
    fmt: Optional[str] = None,
    check_images: bool = True,
    dataset: str = "",
) -> AnnotationReport:
    """Validate a parsed COCO/LVIS annotation file and collect statistics.

    Args:
        data: the parsed file (:func:`read_annotation_json`).
        json_file, image_root: used for messages and to locate images.
        fmt: ``"coco"`` or ``"lvis"``; ``None`` detects it (:func:`detect_format`).
        check_images: check that every image file exists (decoding them is
            :func:`~rs_detectron2.data.lint.image_checks.check_image_files`).
        dataset: the dataset name the findings carry.

    Returns:
        AnnotationReport (never raises for content problems: they are in ``report.findings``).
    """
    fmt = fmt or detect_format(data)
    rep = AnnotationReport(json_file=json_file, image_root=image_root, format=fmt, dataset=dataset)
    images, anns = data["images"], data["annotations"]
    rep.num_images, rep.num_annotations = len(images), len(anns)
    if not _check_categories(rep, data["categories"]):
        return rep
    if not _check_image_records(rep, images, check_images):
        return rep
    if not all(isinstance(a, dict) for a in anns):
        bad = sum(1 for a in anns if not isinstance(a, dict))
        rep.add(ERROR, f"{bad} annotations are not objects.", count=bad, code="annotation_type")
        return rep
    image_ids = {im["id"] for im in images}
    _check_annotation_ids(rep, anns)
    _check_annotation_content(rep, anns, image_ids)
    _count_categories(rep, anns, image_ids)
    return rep


def summary_findings(rep: AnnotationReport, shown: int = 5) -> List[Finding]:
    """Statistics of a report as info findings: format and counts, the rarest and commonest
    categories with instance and image counts, and the LVIS frequency groups."""

    def info(message: str) -> Finding:
        return Finding(INFO, rep.dataset, message, file=rep.json_file, code="stats")

    out = [
        info(f"annotations: {rep.json_file}"),
        info(f"images:      {rep.image_root}"),
        info(
            f"format {rep.format.upper()}: {rep.num_images} images ({len(rep.missing_images)} "
            f"missing, {rep.images_without_annotations} without annotations), "
            f"{rep.num_annotations} annotations, {len(rep.category_ids)} categories"
        ),
    ]
    if rep.category_ids:
        by_count = sorted(rep.category_ids, key=lambda c: rep.instances_per_category.get(c, 0))
        names = dict(zip(rep.category_ids, rep.thing_classes, strict=True))

        def cat(c):
            return (
                f"{names[c]} ({rep.instances_per_category.get(c, 0)} inst., "
                f"{rep.images_per_category.get(c, 0)} img.)"
            )

        out.append(info("rarest:    " + ", ".join(cat(c) for c in by_count[:shown])))
        out.append(info("commonest: " + ", ".join(cat(c) for c in by_count[::-1][:shown])))
    if rep.frequencies:
        groups = Counter(rep.frequencies)
        out.append(
            info(
                f"LVIS frequency groups: f {groups.get('f', 0)} / c {groups.get('c', 0)} "
                f"/ r {groups.get('r', 0)}"
            )
        )
    return out
