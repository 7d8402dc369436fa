"""Checking a registered dataset before a long run: the annotation file, the image files, the
geometry, the loaded dicts, and the model's class count and mask format.

:func:`check_dataset` returns :class:`~rs_detectron2.data.lint.findings.Finding` objects and prints
nothing; ``python -m rs_detectron2.data.check`` prints them with
:func:`~rs_detectron2.data.lint.findings.format_findings`. What is an error, a warning or a count is
explained in :mod:`rs_detectron2.data.lint.findings` and datasets/README.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..sanitize import sanitize_dataset_dicts
from .annotations import (
    AnnotationReport,
    UserDatasetError,
    inspect_annotations,
    read_annotation_json,
    summary_findings,
)
from .config_checks import (
    box_only_config,
    class_count_disagreement,
    class_count_key,
    model_trains_masks,
)
from .findings import ERROR, INFO, WARNING, Finding, examples
from .geometry_checks import ImageRecord, check_geometry
from .image_checks import check_image_files

__all__ = [
    "ConfigFacts",
    "config_facts",
    "dataset_names_from_config",
    "required_mask_format",
    "check_dataset",
    "MASK_FORMAT_KEY",
]

MASK_FORMAT_KEY = "dataloader.train.mapper.instance_mask_format"
"""The config key that selects Detectron2's ``instance_mask_format`` ("polygon" or "bitmask")."""


def _names(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@dataclass(frozen=True)
class ConfigFacts:
    """What the data checks need to know of a LazyConfig.

    Attributes:
        train_names, test_names: ``dataloader.train/test.dataset.names``.
        num_classes: the model's class count, None when it has none (or it is not an int).
        num_classes_key: the key holding it (``"model.roi_heads.num_classes"`` for R-CNNs,
            ``"model.num_classes"`` for dense detectors), None without one.
        mask_format: the training mapper's ``instance_mask_format`` ("polygon", Detectron2's
            default, or "bitmask") when it loads masks, None when it does not.
        class_count_problem: None when every class-count key of the model agrees with
            ``num_classes_key``, else the message that names them
            (:func:`~.config_checks.class_count_disagreement`).
        needs_masks: the model trains on ground-truth masks (Mask R-CNN, SOLOv2, YOLACT).
        box_only_config: for a mask model, the box-only config to train instead on data without
            masks (:func:`~.config_checks.box_only_config`), None when none is found.
    """

    train_names: List[str] = field(default_factory=list)
    test_names: List[str] = field(default_factory=list)
    num_classes: Optional[int] = None
    num_classes_key: Optional[str] = None
    mask_format: Optional[str] = None
    class_count_problem: Optional[str] = None
    needs_masks: bool = False
    box_only_config: Optional[str] = None


def _train_mask_format(cfg) -> Optional[str]:
    mapper = cfg.dataloader.train.get("mapper") if "train" in cfg.dataloader else None
    if mapper is None or not mapper.get("use_instance_mask", False):
        return None
    return mapper.get("instance_mask_format", "polygon")


def config_facts(config_file: str, overrides: Sequence[str] = ()) -> ConfigFacts:
    """Load a LazyConfig, apply ``key=value`` overrides (as train_net.py does) and return its
    :class:`ConfigFacts`."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), list(overrides))
    train = _names(cfg.dataloader.train.dataset.get("names")) if "train" in cfg.dataloader else []
    test = _names(cfg.dataloader.test.dataset.get("names")) if "test" in cfg.dataloader else []
    key, num_classes = class_count_key(cfg)
    if not isinstance(num_classes, int):
        num_classes = None
    needs_masks = model_trains_masks(cfg)
    return ConfigFacts(
        train,
        test,
        num_classes,
        key,
        _train_mask_format(cfg),
        class_count_disagreement(cfg),
        needs_masks,
        box_only_config(config_file) if needs_masks else None,
    )


def dataset_names_from_config(
    config_file: str, overrides: Sequence[str] = ()
) -> Tuple[List[str], List[str], Optional[int]]:
    """Dataset names and number of classes of a LazyConfig.

    Args:
        config_file: path of a LazyConfig python file.
        overrides: ``key=value`` overrides, applied as train_net.py does.

    Returns:
        ``(train_names, test_names, num_classes)``; ``num_classes`` is the model's
        ``roi_heads.num_classes`` or ``num_classes`` (dense detectors), ``None`` if it has neither.
    """
    facts = config_facts(config_file, overrides)
    return facts.train_names, facts.test_names, facts.num_classes


def _mask_counts_of_dicts(dicts: List[dict]) -> Tuple[int, int]:
    rle = poly = 0
    for d in dicts:
        for a in d.get("annotations", ()):
            segm = a.get("segmentation")
            if segm is not None and not a.get("iscrowd"):
                rle += isinstance(segm, dict)
                poly += isinstance(segm, list)
    return rle, poly


def _mask_counts(name: str) -> Tuple[int, int]:
    """Non-crowd (RLE, polygon) segmentations of a registered dataset: from the registration's
    report, else from its annotation file, else from its loaded dicts."""
    meta = MetadataCatalog.get(name)
    report = meta.get("user_dataset_report")
    if isinstance(report, AnnotationReport):
        return report.rle_masks, report.polygon_masks
    json_file = meta.get("json_file")
    if json_file:
        anns = read_annotation_json(json_file)["annotations"]
        return _mask_counts_of_dicts([{"annotations": anns}])
    return _mask_counts_of_dicts(DatasetCatalog.get(name))


def required_mask_format(names: Sequence[str]) -> Optional[str]:
    """The ``instance_mask_format`` that training on ``names`` needs.

    Args:
        names: registered dataset names (the training sets).

    Returns:
        ``"bitmask"`` when a non-crowd annotation's segmentation is RLE (a dict: Detectron2's
        polygon format cannot hold it and fails at iteration 0), ``"polygon"`` when all are
        polygons, None when there are no masks. Reads each annotation file once (datasets
        registered with ``--dataset`` were read at registration and are not read again).
    """
    rle = poly = 0
    for name in names:
        r, p = _mask_counts(name)
        rle, poly = rle + r, poly + p
    return "bitmask" if rle else ("polygon" if poly else None)


def _records(data: dict, rep: AnnotationReport) -> Dict[int, ImageRecord]:
    return {
        im["id"]: ImageRecord(im["id"], rep.image_paths.get(im["id"]), im["height"], im["width"])
        for im in data["images"]
    }


def _empty_categories(rep: AnnotationReport) -> List[Finding]:
    names = dict(zip(rep.category_ids, rep.thing_classes, strict=True))
    empty = [names[c] for c in rep.category_ids if rep.instances_per_category.get(c, 0) == 0]
    if not empty:
        return []
    message = f"{rep.json_file}: {len(empty)} categories have no annotation: {examples(empty, 10)}"
    fix = "remove them from 'categories' or annotate them (the model still predicts them)"
    return [
        Finding(
            WARNING,
            rep.dataset,
            message,
            fix,
            rep.json_file,
            count=len(empty),
            code="category_unused",
        )
    ]


def _check_json(name: str, json_file: str, opts: dict, out: List[Finding]):
    """Annotation file, geometry and image files; returns the report (None if unreadable)."""
    meta = MetadataCatalog.get(name)
    try:
        data = read_annotation_json(json_file)
    except UserDatasetError as e:
        fix = "fix or replace the annotation file"
        out.append(Finding(ERROR, name, str(e), fix, json_file, code="json_unreadable"))
        return None
    fmt = meta.get("evaluator_type") if meta.get("evaluator_type") in ("coco", "lvis") else None
    image_root = meta.get("image_root") or ""
    rep = inspect_annotations(data, json_file, image_root, fmt=fmt, dataset=name)
    out += summary_findings(rep) + rep.findings + _empty_categories(rep)
    if rep.ok:
        records = _records(data, rep)
        out += check_geometry(records, data["annotations"], dataset=name, where=json_file)
        if opts["images"]:
            out += check_image_files(
                list(records.values()),
                dataset=name,
                sample=opts["sample"],
                progress=opts["progress"],
            )
    return rep


def _dict_records(dicts: List[dict]) -> Tuple[Dict[int, ImageRecord], List[dict]]:
    """Image records and COCO-style annotations (``bbox`` as XYWH) from Detectron2 dicts, for
    datasets registered without an annotation file."""
    from detectron2.structures import BoxMode

    images, anns = {}, []
    for i, d in enumerate(dicts):
        key = d.get("image_id", i)
        images[key] = ImageRecord(key, d.get("file_name"), d.get("height"), d.get("width"))
        for a in d.get("annotations", ()):
            bbox = a.get("bbox")
            mode = a.get("bbox_mode", BoxMode.XYWH_ABS)
            if bbox is not None and len(bbox) == 4 and mode != BoxMode.XYWH_ABS:
                bbox = BoxMode.convert(list(bbox), mode, BoxMode.XYWH_ABS)
            anns.append(dict(a, image_id=key, bbox=bbox, bbox_mode=BoxMode.XYWH_ABS))
    return images, anns


def _check_dicts_without_json(name: str, dicts: List[dict], opts: dict) -> List[Finding]:
    out = []
    missing = [d["file_name"] for d in dicts if not os.path.isfile(d.get("file_name", ""))]
    if missing:
        out.append(
            Finding(
                ERROR,
                name,
                f"{name}: {len(missing)} of {len(dicts)} image files are "
                f"missing, e.g. {examples(missing)}",
                "check the dataset's image paths",
                missing[0],
                count=len(missing),
                code="image_missing",
            )
        )
    if all(d.get("height") and d.get("width") for d in dicts):
        images, anns = _dict_records(dicts)
        out += check_geometry(images, anns, dataset=name, where=name)
        if opts["images"]:
            out += check_image_files(
                list(images.values()),
                dataset=name,
                sample=opts["sample"],
                progress=opts["progress"],
            )
    return out


def _check_loaded(name: str, rep: Optional[AnnotationReport], opts: dict) -> List[Finding]:
    """Load through the catalog as training does and count what training drops: the annotation
    file's degenerate annotations (``rep``, whether Detectron2's loader or the sanitiser drops
    them), else what the sanitiser drops of the loaded dicts."""
    has_json = rep is not None
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:  # any loader failure is a finding about this dataset
        return [
            Finding(
                ERROR,
                name,
                f"{name}: loading failed: {type(e).__name__}: {e}",
                "run the loader in Python to see the full traceback",
                code="load_failed",
            )
        ]
    classes = MetadataCatalog.get(name).get("thing_classes") or []
    _, counts = sanitize_dataset_dicts(dicts, len(classes) or None, dataset_name=name, log=False)
    dropped = {k: v for k, v in counts.items() if v and k != "polygons_removed"}
    if has_json:  # Detectron2's loader drops some (polygons of < 3 points) before the sanitiser
        for reason, n in rep.degenerate.items():
            dropped[reason] = max(dropped.get(reason, 0), n)
    detail = f" ({', '.join(f'{v} {k}' for k, v in dropped.items())})" if dropped else ""
    out = [
        Finding(
            INFO,
            name,
            f"loaded {len(dicts)} images; training would drop "
            f"{sum(dropped.values())} degenerate annotations{detail}",
            code="stats",
        )
    ]
    if counts["bad_category"]:
        out.append(
            Finding(
                ERROR,
                name,
                f"{name}: {counts['bad_category']} loaded annotations "
                f"have a class id outside 0..{len(classes) - 1} (thing_classes)",
                "make thing_dataset_id_to_contiguous_id cover every category id",
                count=counts["bad_category"],
                code="category_out_of_range",
            )
        )
    if not has_json:
        if dropped:
            out.append(
                Finding(
                    WARNING,
                    name,
                    f"{name}: {sum(dropped.values())} degenerate "
                    f"annotations{detail} are dropped in training.",
                    count=sum(dropped.values()),
                    code="degenerate",
                )
            )
        out += _check_dicts_without_json(name, dicts, opts)
    return out


def _class_count(name: str, n: int, num_classes: Optional[int], key: Optional[str]):
    if num_classes is None or not n or n == num_classes:
        return []
    override = f"{key}={n}" if key else f"model.roi_heads.num_classes={n} (or model.num_classes)"
    message = f"{name} has {n} classes but the model predicts {num_classes}"
    return [
        Finding(ERROR, name, message, f"add the override {override}", count=n, code="num_classes")
    ]


def _mask_finding(name: str, rle: int, mask_format: Optional[str]) -> List[Finding]:
    if not rle:
        return []
    what = f"{name}: {rle} non-crowd annotations have RLE masks: train with mask format bitmask"
    fix = f"add the override {MASK_FORMAT_KEY}=bitmask"
    if mask_format == "bitmask":
        return [Finding(INFO, name, f"{what} (set)", code="mask_format")]
    if mask_format == "polygon":
        message = f"{what}; the config uses polygon, which fails at iteration 0"
        return [Finding(ERROR, name, message, fix, count=rle, code="mask_format")]
    message = f"{what} (the shipped configs use polygon, which fails at iteration 0)"
    return [Finding(WARNING, name, message, fix, count=rle, code="mask_format")]


def _no_mask_finding(name: str, annotations: int, box_config: Optional[str]) -> List[Finding]:
    message = (
        f"{name} has boxes only (none of its {annotations} annotations has a 'segmentation') but "
        "the config's model trains on masks: training would fail at iteration 0 (no gt_masks)"
    )
    if box_config:
        fix = f"train the box-only config {box_config} instead (or add masks to the data)"
    else:
        fix = (
            "train a box-only config instead (Faster R-CNN or ATSS, e.g. "
            "configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py), or add masks to the data"
        )
    return [Finding(ERROR, name, message, fix, count=annotations, code="no_masks")]


def check_dataset(
    name: str,
    *,
    num_classes: Optional[int] = None,
    num_classes_key: Optional[str] = None,
    mask_format: Optional[str] = None,
    needs_masks: bool = False,
    box_only_config: Optional[str] = None,
    images: bool = True,
    sample: Optional[int] = None,
    progress: bool = True,
    load: bool = True,
) -> List[Finding]:
    """Check one registered dataset.

    Args:
        name: a name in Detectron2's ``DatasetCatalog``.
        num_classes: the model's class count; a dataset with another count is an error whose fix
            is the override ``{num_classes_key}=N`` (see :class:`ConfigFacts`).
        num_classes_key: the config key of ``num_classes``.
        mask_format: the ``instance_mask_format`` training will use on this dataset (None: not
            known, or not a training set); RLE masks with "polygon" are an error, with None a
            warning.
        needs_masks: the model trains on masks (a training set of a mask config): a dataset
            with annotations but no segmentation is an error, whose fix names
            ``box_only_config`` (see :class:`ConfigFacts`).
        box_only_config: the config to train instead on boxes alone.
        images: decode the image files and compare their sizes with the annotation file's.
        sample: decode only this many images, drawn at random with a fixed seed (large sets).
        progress: show a progress bar while decoding.
        load: also load the dataset through the catalog, as training does, and count what the
            sanitiser drops.

    Returns:
        list of Finding, in check order: statistics (info), then per check its warnings and
        errors. Nothing is printed.
    """
    if name not in DatasetCatalog.list():
        message = f"{name}: not a registered dataset (register it with --dataset NAME:JSON:ROOT)."
        fix = "give --dataset NAME:JSON:IMAGE_ROOT, or a builtin name such as coco_2017_train"
        return [Finding(ERROR, name, message, fix, code="not_registered")]
    opts = {"images": images, "sample": sample, "progress": progress}
    meta = MetadataCatalog.get(name)
    json_file = meta.get("json_file")  # the shapes datasets are generated here, on first use
    out: List[Finding] = []
    rep = _check_json(name, json_file, opts, out) if json_file else None
    if json_file and rep is None:
        return out
    if load and not any(f.severity == ERROR for f in out):
        out += _check_loaded(name, rep, opts)
    n = len(meta.get("thing_classes") or (rep.thing_classes if rep else []))
    out += _class_count(name, n, num_classes, num_classes_key)
    if rep is not None:
        rle, polygons, annotations = rep.rle_masks, rep.polygon_masks, rep.num_annotations
    elif load:  # no annotation file: count in the loaded dicts
        dicts = DatasetCatalog.get(name)
        rle, polygons = _mask_counts_of_dicts(dicts)
        annotations = sum(len(d.get("annotations", ())) for d in dicts)
    else:
        rle = polygons = annotations = 0
    out += _mask_finding(name, rle, mask_format)
    if needs_masks and annotations and not (rle or polygons):
        out += _no_mask_finding(name, annotations, box_only_config)
    return out
