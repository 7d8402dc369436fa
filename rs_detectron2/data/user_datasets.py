"""Register COCO- or LVIS-format annotation files as Detectron2 datasets
(``--dataset NAME:JSON:ROOT``).

``train_net.py --dataset NAME:JSON:IMAGE_ROOT`` (repeatable) calls :func:`register_user_datasets`;
the name can then be used in ``dataloader.train.dataset.names`` / ``dataloader.test.dataset.names``.

Format. The JSON is read once at registration. It is LVIS-format when a category has ``frequency``
or an image has ``neg_category_ids`` / ``not_exhaustive_category_ids``; otherwise COCO-format. An
LVIS-format file must then be complete for LVIS evaluation (every category has a ``frequency`` in
f/c/r, every image both label lists), else registration fails and says what is missing.

Images. COCO: ``IMAGE_ROOT/file_name``. LVIS: ``IMAGE_ROOT/file_name`` when images have a
``file_name``, else the last two parts of ``coco_url`` under ``IMAGE_ROOT`` (Detectron2's convention
for LVIS v1: ``IMAGE_ROOT`` is the COCO folder, holding ``train2017/`` and ``val2017/``).

Categories. Any distinct integer ids; they are mapped to contiguous ids ``0..K-1`` in increasing id
order (``thing_dataset_id_to_contiguous_id``), and mapped back by the evaluators.

Registration fails (:class:`UserDatasetError`, a ``ValueError``, naming the file) on: a malformed
spec; a missing, unreadable or invalid JSON file; missing ``images`` / ``annotations`` / ``categories``;
duplicate image, annotation or category ids; images without ``height`` / ``width``; annotations
without ``id``; annotations whose category id is not in ``categories`` (ids and counts are listed);
image files that do not exist (count and examples); a name that is already registered for another
file. Registering the same name for the same files again does nothing.

Kept, with a logged count (warning): images without annotations (kept for evaluation; training drops
them through Detectron2's ``filter_empty``, which logs its own count); annotations whose
``image_id`` is not an image (no loader or evaluator ever reads them); annotations without ``area`` (COCO / LVIS
evaluation needs it). Degenerate boxes and polygons are removed at training time by
:mod:`rs_detectron2.data.sanitize`, with counts.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

from .sanitize import annotation_problem

__all__ = [
    "UserDatasetError",
    "DatasetSpec",
    "AnnotationReport",
    "parse_dataset_spec",
    "read_annotation_json",
    "detect_format",
    "image_file",
    "inspect_annotations",
    "load_lvis_format_json",
    "register_user_dataset",
    "register_user_datasets",
]

logger = logging.getLogger(__name__)

_MAX_EXAMPLES = 5
_LVIS_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")
_REPORTS: Dict[str, "AnnotationReport"] = {}  # name -> report of its registration


class UserDatasetError(ValueError):
    """A dataset given with ``--dataset`` (or to :func:`register_user_dataset`) cannot be used."""


@dataclass(frozen=True)
class DatasetSpec:
    """One ``NAME:JSON:IMAGE_ROOT`` argument, split."""

    name: str
    json_file: str
    image_root: str


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Split ``"NAME:JSON:IMAGE_ROOT"`` into its three parts.

    Args:
        spec: the string; no part may be empty or contain ``:``.

    Returns:
        DatasetSpec with the parts as given (paths are not resolved or checked here).

    Raises:
        UserDatasetError: when the string does not have exactly three non-empty parts.
    """
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise UserDatasetError(
            "--dataset expects NAME:JSON:IMAGE_ROOT (three non-empty parts separated by ':', e.g. "
            "my_train:data/annotations/train.json:data/images), got {!r}".format(spec)
        )
    name, json_file, image_root = (p.strip() for p in parts)
    return DatasetSpec(name, json_file, image_root)


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
        raise UserDatasetError("Annotation file {} does not exist.".format(json_file))
    if not os.path.isfile(json_file):
        raise UserDatasetError("Annotation file {} is not a file.".format(json_file))
    try:
        with open(json_file, "rb") as f:
            data = json.load(f)
    except OSError as e:
        raise UserDatasetError("Cannot read annotation file {}: {}".format(json_file, e)) from e
    except UnicodeDecodeError as e:
        raise UserDatasetError(
            "Annotation file {} is not UTF-8 text: {}".format(json_file, e)
        ) from e
    except json.JSONDecodeError as e:
        raise UserDatasetError(
            "Annotation file {} is not valid JSON: {} (line {}, column {}).".format(
                json_file, e.msg, e.lineno, e.colno
            )
        ) from e
    if not isinstance(data, dict):
        raise UserDatasetError(
            "Annotation file {} holds a JSON {}, not an object with 'images', 'annotations' and "
            "'categories'.".format(json_file, type(data).__name__)
        )
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)
    ]
    if missing:
        raise UserDatasetError(
            "Annotation file {} has no {} list{} (COCO and LVIS files have 'images', "
            "'annotations' and 'categories').".format(
                json_file, ", ".join(repr(k) for k in missing), "s" if len(missing) > 1 else ""
            )
        )
    return data


def detect_format(data: dict) -> str:
    """``"lvis"`` if a category has ``frequency`` or an image has LVIS label lists, else ``"coco"``.

    Args:
        data: a parsed annotation file (see :func:`read_annotation_json`).
    """
    if any(isinstance(c, dict) and "frequency" in c for c in data["categories"]):
        return "lvis"
    if any(
        isinstance(im, dict) and any(k in im for k in _LVIS_IMAGE_KEYS) for im in data["images"]
    ):
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


def _examples(items: Iterable, n: int = _MAX_EXAMPLES) -> str:
    items = list(items)
    text = ", ".join(str(x) for x in items[:n])
    return text + (", ..." if len(items) > n else "")


def _duplicates(ids: Iterable) -> List:
    return sorted((k for k, v in Counter(ids).items() if v > 1), key=str)


@dataclass
class AnnotationReport:
    """What :func:`inspect_annotations` found in one annotation file.

    ``errors`` make the dataset unusable; ``warnings`` describe data that is kept but ignored or
    dropped later (always with a count).
    """

    json_file: str
    image_root: str
    format: str
    num_images: int = 0
    num_annotations: int = 0
    category_ids: List[int] = field(default_factory=list)
    thing_classes: List[str] = field(default_factory=list)
    frequencies: List[str] = field(default_factory=list)  # LVIS only, contiguous order
    instances_per_category: Dict[int, int] = field(default_factory=dict)  # by dataset id
    images_per_category: Dict[int, int] = field(default_factory=dict)
    images_without_annotations: int = 0
    missing_images: List[str] = field(default_factory=list)
    degenerate: Dict[str, int] = field(default_factory=dict)  # sanitize reason -> annotations
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def id_map(self) -> Dict[int, int]:
        """Dataset category id -> contiguous id (increasing id order)."""
        return {cid: i for i, cid in enumerate(self.category_ids)}

    @property
    def ok(self) -> bool:
        return not self.errors


def inspect_annotations(
    data: dict,
    json_file: str,
    image_root: str,
    fmt: Optional[str] = None,
    check_images: bool = True,
) -> AnnotationReport:
    """Validate a parsed COCO/LVIS annotation file and collect statistics.

    Args:
        data: the parsed file (:func:`read_annotation_json`).
        json_file, image_root: used for messages and to locate images.
        fmt: ``"coco"`` or ``"lvis"``; ``None`` detects it (:func:`detect_format`).
        check_images: check that every image file exists.

    Returns:
        AnnotationReport (never raises for content problems: they are in ``report.errors``).
    """
    fmt = fmt or detect_format(data)
    rep = AnnotationReport(json_file=json_file, image_root=image_root, format=fmt)
    where = "{}:".format(json_file)
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    rep.num_images, rep.num_annotations = len(images), len(anns)

    # categories
    bad = [c for c in cats if not isinstance(c, dict) or not _is_int(c.get("id"))]
    if bad:
        rep.errors.append(
            "{} {} categories without an integer 'id' (e.g. {}).".format(
                where, len(bad), _examples(bad, 2)
            )
        )
        return rep
    dup = _duplicates(c["id"] for c in cats)
    if dup:
        rep.errors.append("{} duplicate category ids {}.".format(where, _examples(dup)))
    cats = sorted(cats, key=lambda c: c["id"])
    rep.category_ids = [c["id"] for c in cats]
    rep.thing_classes = [str(c.get("name", c["id"])) for c in cats]
    unnamed = [c["id"] for c in cats if "name" not in c]
    if unnamed:
        rep.warnings.append(
            "{} {} categories have no 'name' (their id is used): {}.".format(
                where, len(unnamed), _examples(unnamed)
            )
        )
    if not cats:
        rep.errors.append("{} 'categories' is empty.".format(where))
    if fmt == "lvis":
        rep.frequencies = [c.get("frequency") for c in cats]
        nofreq = [c["id"] for c in cats if c.get("frequency") not in ("f", "c", "r")]
        if nofreq:
            rep.errors.append(
                "{} LVIS format, but {} categories have no 'frequency' in f/c/r (needed for "
                "APr/APc/APf), e.g. ids {}.".format(where, len(nofreq), _examples(nofreq))
            )

    # images
    bad = [im for im in images if not isinstance(im, dict) or not _is_int(im.get("id"))]
    if bad:
        rep.errors.append("{} {} images without an integer 'id'.".format(where, len(bad)))
        return rep
    dup = _duplicates(im["id"] for im in images)
    if dup:
        rep.errors.append("{} duplicate image ids {}.".format(where, _examples(dup)))
    nosize = [
        im["id"] for im in images if not (_is_int(im.get("height")) and _is_int(im.get("width")))
    ]
    if nosize:
        rep.errors.append(
            "{} {} images have no integer 'height'/'width', e.g. ids {}.".format(
                where, len(nosize), _examples(nosize)
            )
        )
    if fmt == "lvis":
        for key in _LVIS_IMAGE_KEYS:
            lacking = [im["id"] for im in images if not isinstance(im.get(key), list)]
            if lacking:
                rep.errors.append(
                    "{} LVIS format, but {} of {} images have no '{}' list (LVIS evaluation needs "
                    "it), e.g. ids {}.".format(
                        where, len(lacking), len(images), key, _examples(lacking)
                    )
                )
    paths = {}
    nofile = []
    for im in images:
        p = image_file(im, image_root, fmt)
        if p is None:
            nofile.append(im["id"])
        else:
            paths[im["id"]] = p
    if nofile:
        rep.errors.append(
            "{} {} images have no {}, e.g. ids {}.".format(
                where,
                len(nofile),
                "'file_name' or 'coco_url'" if fmt == "lvis" else "'file_name'",
                _examples(nofile),
            )
        )
    if check_images:
        rep.missing_images = [p for p in paths.values() if not os.path.isfile(p)]
        if rep.missing_images:
            rep.errors.append(
                "{} {} of {} image files are missing under {}, e.g. {}.".format(
                    where,
                    len(rep.missing_images),
                    len(images),
                    image_root,
                    _examples(rep.missing_images),
                )
            )

    # annotations
    bad = [a for a in anns if not isinstance(a, dict)]
    if bad:
        rep.errors.append("{} {} annotations are not objects.".format(where, len(bad)))
        return rep
    noid = sum(1 for a in anns if "id" not in a)
    if noid:
        rep.errors.append("{} {} annotations have no 'id'.".format(where, noid))
    dup = _duplicates(a["id"] for a in anns if "id" in a)
    if dup:
        rep.errors.append("{} duplicate annotation ids {}.".format(where, _examples(dup)))
    known_cats = set(rep.category_ids)
    unknown = Counter(a.get("category_id") for a in anns if a.get("category_id") not in known_cats)
    if unknown:
        rep.errors.append(
            "{} {} annotations use category ids that are not in 'categories': {}.".format(
                where,
                sum(unknown.values()),
                _examples("{} ({} annotations)".format(k, v) for k, v in unknown.most_common()),
            )
        )
    if fmt == "coco":
        empty_box = sum(1 for a in anns if isinstance(a.get("bbox"), list) and not a["bbox"])
        if empty_box:
            rep.errors.append(
                "{} {} annotations have an empty 'bbox' (Detectron2's COCO loader rejects "
                "the file).".format(where, empty_box)
            )
    has_segm = any("segmentation" in a for a in anns)
    degenerate = Counter()
    for a in anns:
        reason, _ = annotation_problem(a, None, require_segmentation=has_segm)
        if reason is not None:
            degenerate[reason] += 1
    rep.degenerate = dict(degenerate)
    if degenerate:
        rep.warnings.append(
            "{} {} annotations are degenerate ({}): training drops them "
            "(rs_detectron2.data.sanitize, with counts).".format(
                where,
                sum(degenerate.values()),
                ", ".join("{} {}".format(v, k) for k, v in degenerate.most_common()),
            )
        )
    image_ids = set(paths) | set(nofile)
    orphans = sum(1 for a in anns if a.get("image_id") not in image_ids)
    if orphans:
        rep.warnings.append(
            "{} {} annotations refer to image ids that are not in 'images'; they are "
            "ignored.".format(where, orphans)
        )
    noarea = sum(1 for a in anns if "area" not in a)
    if noarea:
        rep.warnings.append(
            "{} {} annotations have no 'area': training works, COCO/LVIS evaluation of this file "
            "will fail.".format(where, noarea)
        )
    inst, img_sets = Counter(), {}
    for a in anns:
        cid = a.get("category_id")
        if cid in known_cats and a.get("image_id") in image_ids:
            inst[cid] += 1
            img_sets.setdefault(cid, set()).add(a["image_id"])
    rep.instances_per_category = {cid: inst.get(cid, 0) for cid in rep.category_ids}
    rep.images_per_category = {cid: len(img_sets.get(cid, ())) for cid in rep.category_ids}
    annotated = {a.get("image_id") for a in anns}
    rep.images_without_annotations = sum(1 for i in image_ids if i not in annotated)
    if rep.images_without_annotations:
        rep.warnings.append(
            "{} {} of {} images have no annotation: kept for evaluation; training drops them "
            "(Detectron2's filter_empty, which logs the count).".format(
                where, rep.images_without_annotations, rep.num_images
            )
        )
    return rep


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_lvis_format_json(json_file: str, image_root: str, id_map: Dict[int, int]) -> List[dict]:
    """Detectron2 dataset dicts from an LVIS-format file, for any category ids.

    Detectron2's ``load_lvis_json`` needs ids 1..K, images located by ``coco_url`` and asserts on
    polygons with fewer than 3 points. This loader maps ids through ``id_map``, locates images with
    :func:`image_file` and leaves degenerate polygons to :mod:`rs_detectron2.data.sanitize`.

    Args:
        json_file: LVIS-format annotation file.
        image_root: folder the image paths are relative to.
        id_map: dataset category id -> contiguous id.

    Returns:
        list[dict]: one record per image (``file_name``, ``height``, ``width``, ``image_id``,
        ``neg_category_ids``, ``not_exhaustive_category_ids`` with the file's own ids, and
        ``annotations`` with ``bbox`` (XYWH_ABS), ``bbox_mode``, contiguous ``category_id``,
        ``segmentation`` and ``iscrowd`` when present), in increasing image id order.

    Raises:
        UserDatasetError: for an annotation whose category is not in ``id_map``.
    """
    from detectron2.structures import BoxMode

    data = read_annotation_json(json_file)
    per_image: Dict[int, list] = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    out = []
    for img in sorted(data["images"], key=lambda im: im["id"]):
        objs = []
        for a in per_image.get(img["id"], ()):
            if a["category_id"] not in id_map:
                raise UserDatasetError(
                    "{}: annotation {} has unknown category id {}.".format(
                        json_file, a.get("id"), a["category_id"]
                    )
                )
            obj = {
                "bbox": a.get("bbox"),
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": id_map[a["category_id"]],
            }
            for key in ("segmentation", "iscrowd"):
                if key in a:
                    obj[key] = a[key]
            objs.append(obj)
        out.append(
            {
                "file_name": image_file(img, image_root, "lvis"),
                "height": img["height"],
                "width": img["width"],
                "image_id": img["id"],
                "neg_category_ids": img.get("neg_category_ids", []),
                "not_exhaustive_category_ids": img.get("not_exhaustive_category_ids", []),
                "annotations": objs,
            }
        )
    logger.info("Loaded %d images in LVIS format from %s", len(out), json_file)
    return out


def _load_coco(json_file: str, image_root: str, name: str) -> List[dict]:
    from detectron2.data.datasets import load_coco_json

    return load_coco_json(json_file, image_root, name)


def register_user_dataset(
    name: str, json_file: str, image_root: str, *, check_images: bool = True
) -> AnnotationReport:
    """Register a COCO- or LVIS-format annotation file under ``name``.

    Args:
        name: dataset name for ``DatasetCatalog`` / ``MetadataCatalog``.
        json_file: the annotation file (stored as an absolute path).
        image_root: the image folder (see the module docstring; stored as an absolute path).
        check_images: fail when image files are missing (default).

    Sets metadata ``thing_classes`` (category names in increasing id order),
    ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``, ``evaluator_type``
    (``"coco"`` or ``"lvis"``) and, for LVIS, ``class_image_count`` (``[{"id", "image_count"}]``,
    from the categories' ``image_count`` when every category has one, else counted in this file) and
    ``class_frequency`` (f/c/r per contiguous id).

    Returns:
        AnnotationReport of the file (its warnings have been logged).

    Raises:
        UserDatasetError: see the module docstring.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file = os.path.abspath(os.path.expanduser(json_file))
    image_root = os.path.abspath(os.path.expanduser(image_root))
    key = (json_file, image_root)
    if name in DatasetCatalog.list():
        if MetadataCatalog.get(name).get("user_dataset_source") == key and name in _REPORTS:
            return _REPORTS[name]
        raise UserDatasetError(
            "Dataset name {!r} is already registered (a builtin dataset or an earlier --dataset); "
            "choose another name.".format(name)
        )
    if not os.path.isdir(image_root):
        raise UserDatasetError(
            "Image folder {} of dataset {!r} does not exist.".format(image_root, name)
        )
    data = read_annotation_json(json_file)
    report = inspect_annotations(data, json_file, image_root, check_images=check_images)
    del data
    if report.errors:
        raise UserDatasetError(
            "Cannot register dataset {!r}:\n  ".format(name) + "\n  ".join(report.errors)
        )
    for w in report.warnings:
        logger.warning("Dataset %r: %s", name, w)

    meta = dict(
        thing_classes=report.thing_classes,
        thing_dataset_id_to_contiguous_id=report.id_map,
        json_file=json_file,
        image_root=image_root,
        evaluator_type=report.format,
        user_dataset_source=key,
    )
    if report.format == "lvis":
        loader = functools.partial(load_lvis_format_json, json_file, image_root, report.id_map)
        meta["class_image_count"] = [
            {"id": cid, "image_count": report.images_per_category[cid]}
            for cid in report.category_ids
        ]
        meta["class_frequency"] = list(report.frequencies)
    else:
        loader = functools.partial(_load_coco, json_file, image_root, name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**meta)
    _REPORTS[name] = report
    logger.info(
        "Registered dataset %r: %s format, %d images, %d annotations, %d categories "
        "(%s, images in %s)",
        name,
        report.format.upper(),
        report.num_images,
        report.num_annotations,
        len(report.category_ids),
        json_file,
        image_root,
    )
    return report


def register_user_datasets(specs: Optional[Sequence[str]]) -> List[str]:
    """Register every ``NAME:JSON:IMAGE_ROOT`` of ``specs`` (the values of ``--dataset``).

    Args:
        specs: the strings, or ``None`` / empty (nothing to do).

    Returns:
        list[str]: the registered names, in order.

    Raises:
        UserDatasetError: for the first spec that cannot be registered (see
        :func:`register_user_dataset`); a name given twice in ``specs`` is an error too.
    """
    parsed = [parse_dataset_spec(s) for s in (specs or ())]
    dup = _duplicates(p.name for p in parsed)
    if dup:
        raise UserDatasetError(
            "--dataset names must be unique; given more than once: {}".format(", ".join(dup))
        )
    for p in parsed:
        register_user_dataset(p.name, p.json_file, p.image_root)
    return [p.name for p in parsed]
