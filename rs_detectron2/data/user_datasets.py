"""Register COCO- or LVIS-format annotation files as Detectron2 datasets
(``--dataset NAME:JSON:IMAGE_ROOT``).

``train_net.py --dataset NAME:JSON:IMAGE_ROOT`` (repeatable, :func:`add_dataset_argument`) calls
:func:`register_user_datasets`; the name can then be used in ``dataloader.train.dataset.names`` /
``dataloader.test.dataset.names``.

Format. The JSON is read once at registration (:mod:`rs_detectron2.data.lint.annotations`). An
LVIS-format file must be complete for LVIS evaluation (every category has a ``frequency`` in
f/c/r, every image both label lists), else registration fails and says what is missing.

Images. COCO: ``IMAGE_ROOT/file_name``. LVIS: ``IMAGE_ROOT/file_name`` when images have a
``file_name``, else the last two parts of ``coco_url`` under ``IMAGE_ROOT`` (Detectron2's
convention for LVIS v1: ``IMAGE_ROOT`` is the COCO folder, holding ``train2017/`` and
``val2017/``).

Categories. Any distinct integer ids; they are mapped to contiguous ids ``0..K-1`` in increasing
id order (``thing_dataset_id_to_contiguous_id``), and mapped back by the evaluators.

Registration fails (:class:`UserDatasetError`, a ``ValueError``, naming the file and the fix) on:
a malformed spec; a missing, unreadable or invalid JSON file; missing ``images`` /
``annotations`` / ``categories``; duplicate image, annotation or category ids; images without
``height`` / ``width``; annotations without ``id``; annotations whose category id is not in
``categories`` (ids and counts are listed); image files that do not exist (count and examples); a
name that is already registered for another file. Registering the same name for the same files
again does nothing.

Kept, with a logged count (warning): images without annotations (kept for evaluation; training
drops them through Detectron2's ``filter_empty``, which logs its own count); annotations whose
``image_id`` is not an image (no loader or evaluator ever reads them); annotations without
``area`` (COCO / LVIS evaluation needs it). Degenerate boxes and polygons are removed at training
time by :mod:`rs_detectron2.data.sanitize`, with counts. The image files are decoded and the
geometry is checked by ``python -m rs_detectron2.data.check`` (datasets/README.md).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .lint.annotations import (
    AnnotationReport,
    UserDatasetError,
    detect_format,
    image_file,
    inspect_annotations,
    read_annotation_json,
)
from .lint.findings import ERROR

__all__ = [
    "UserDatasetError",
    "DatasetSpec",
    "AnnotationReport",
    "add_dataset_argument",
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


class _ArbitraryCategoryIds(logging.Filter):
    """Drops Detectron2's "Category ids in annotations are not in [1, #categories]! We'll apply a
    mapping" warning: any integer ids are fine here (the loader maps them to contiguous ids and
    every output maps them back), so the warning only worried users with correct data."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Category ids in annotations are not in [1, #categories]" not in record.getMessage()


# Once, at import: Detectron2's COCO loader logs through this logger.
logging.getLogger("detectron2.data.datasets.coco").addFilter(_ArbitraryCategoryIds())

_REPORT_KEY = "user_dataset_report"  # metadata key holding the registration's AnnotationReport


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
            f"my_train:data/annotations/train.json:data/images), got {spec!r}"
        )
    name, json_file, image_root = (p.strip() for p in parts)
    return DatasetSpec(name, json_file, image_root)


def add_dataset_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the repeatable ``--dataset NAME:JSON:IMAGE_ROOT`` flag (the list of strings lands in
    ``args.dataset``, empty by default; pass it to :func:`register_user_datasets`).

    Args:
        parser: the command's parser (``train_net.py``'s, ``python -m rs_detectron2.data.check``'s).

    Returns:
        the same parser.
    """
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME:JSON:IMAGE_ROOT",
        help="register a COCO- or LVIS-format annotation file as dataset NAME (repeatable); use "
        "it with dataloader.train.dataset.names=NAME / dataloader.test.dataset.names=NAME",
    )
    return parser


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
                    f"{json_file}: annotation {a.get('id')} has unknown category id "
                    f"{a['category_id']}."
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
    logger.info(f"Loaded {len(out)} images in LVIS format from {json_file}")
    return out


def _load_coco(json_file: str, image_root: str, name: str) -> List[dict]:
    from detectron2.data.datasets import load_coco_json

    return load_coco_json(json_file, image_root, name)


def _raise_for_errors(name: str, report: AnnotationReport) -> None:
    errors = [f for f in report.findings if f.severity == ERROR]
    if errors:
        lines = [f.message + (f"\n    fix: {f.fix}" if f.fix else "") for f in errors]
        raise UserDatasetError(
            f"Cannot register dataset {name!r}:\n  " + "\n  ".join(lines), report.findings
        )


def _metadata(report: AnnotationReport, json_file: str, image_root: str) -> dict:
    meta = dict(
        thing_classes=report.thing_classes,
        thing_dataset_id_to_contiguous_id=report.id_map,
        json_file=json_file,
        image_root=image_root,
        evaluator_type=report.format,
        user_dataset_source=(json_file, image_root),
    )
    if report.format == "lvis":
        meta["class_image_count"] = [
            {"id": cid, "image_count": report.images_per_category[cid]}
            for cid in report.category_ids
        ]
        meta["class_frequency"] = list(report.frequencies)
    meta[_REPORT_KEY] = report
    return meta


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
    (``"coco"`` or ``"lvis"``), ``user_dataset_report`` (the returned report) and, for LVIS,
    ``class_image_count`` (``[{"id", "image_count"}]``, counted in this file) and
    ``class_frequency`` (f/c/r per contiguous id).

    Returns:
        AnnotationReport of the file (its warnings have been logged).

    Raises:
        UserDatasetError: see the module docstring; its ``findings`` hold the report's findings.
    """
    json_file = os.path.abspath(os.path.expanduser(json_file))
    image_root = os.path.abspath(os.path.expanduser(image_root))
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("user_dataset_source") == (json_file, image_root) and meta.get(_REPORT_KEY):
            return meta.get(_REPORT_KEY)
        raise UserDatasetError(
            f"Dataset name {name!r} is already registered (a builtin dataset or an earlier "
            "--dataset); choose another name."
        )
    if not os.path.isdir(image_root):
        raise UserDatasetError(f"Image folder {image_root} of dataset {name!r} does not exist.")
    data = read_annotation_json(json_file)
    report = inspect_annotations(
        data, json_file, image_root, check_images=check_images, dataset=name
    )
    del data
    _raise_for_errors(name, report)
    for w in report.warnings:
        logger.warning(f"Dataset {name!r}: {w}")
    if report.format == "lvis":
        loader = functools.partial(load_lvis_format_json, json_file, image_root, report.id_map)
    else:
        loader = functools.partial(_load_coco, json_file, image_root, name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**_metadata(report, json_file, image_root))
    logger.info(
        f"Registered dataset {name!r}: {report.format.upper()} format, {report.num_images} "
        f"images, {report.num_annotations} annotations, {len(report.category_ids)} categories "
        f"({json_file}, images in {image_root})"
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
    names = [p.name for p in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserDatasetError(
            f"--dataset names must be unique; given more than once: {', '.join(dup)}"
        )
    for p in parsed:
        register_user_dataset(p.name, p.json_file, p.image_root)
    return names
