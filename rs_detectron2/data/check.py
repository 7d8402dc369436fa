"""Check a dataset layout before a long run.

    python -m rs_detectron2.data.check NAME [NAME ...]
    python -m rs_detectron2.data.check --dataset NAME:JSON:IMAGE_ROOT [--dataset ...]
    python -m rs_detectron2.data.check --config-file CFG [KEY=VALUE ...] [--dataset ...]

NAME is a registered dataset (Detectron2's builtin ``coco_2017_*`` / ``lvis_v1_*`` under
``$DETECTRON2_DATASETS``, ``rs_shapes_*``, or one given with ``--dataset``). With ``--config-file``
the config's ``dataloader.train.dataset.names`` and ``dataloader.test.dataset.names`` are checked
(``KEY=VALUE`` overrides apply first, as in train_net.py), and the number of classes of the model
against the training set.

For each dataset: the annotation file exists and is valid COCO/LVIS JSON, every image file exists,
categories and their instance / image counts (LVIS: frequency groups), images without annotations,
degenerate annotations that training will drop; then the dataset is loaded the way training loads
it. Prints a report; exits with 1 when a dataset cannot be used (with ``--strict`` also when there
are warnings), else 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from typing import List, Optional, Sequence, Tuple

__all__ = ["check_dataset", "dataset_names_from_config", "main"]

_SHOWN_CLASSES = 5


def _names(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


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
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), list(overrides))
    train = _names(cfg.dataloader.train.dataset.get("names")) if "train" in cfg.dataloader else []
    test = _names(cfg.dataloader.test.dataset.get("names")) if "test" in cfg.dataloader else []
    model = cfg.get("model", {})
    num_classes = None
    if "roi_heads" in model and "num_classes" in model.roi_heads:
        num_classes = model.roi_heads.num_classes
    elif "num_classes" in model:
        num_classes = model.num_classes
    return train, test, (num_classes if isinstance(num_classes, int) else None)


def check_dataset(name: str, load: bool = True, out=sys.stdout) -> Tuple[List[str], List[str], int]:
    """Check one registered dataset and print a report to ``out``.

    Args:
        name: a name in Detectron2's ``DatasetCatalog``.
        load: also load it through the catalog, as training does, and count the annotations the
            sanitiser would drop.
        out: text stream for the report.

    Returns:
        ``(errors, warnings, num_classes)``: message lists and the number of ``thing_classes``
        (0 when unknown).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from .sanitize import sanitize_dataset_dicts
    from .user_datasets import UserDatasetError, inspect_annotations, read_annotation_json

    errors: List[str] = []
    warnings: List[str] = []
    print("== {}".format(name), file=out)
    if name not in DatasetCatalog.list():
        errors.append(
            "{}: not a registered dataset (register it with --dataset NAME:JSON:ROOT).".format(name)
        )
        return errors, warnings, 0
    meta = MetadataCatalog.get(name)
    json_file, image_root = meta.get("json_file"), meta.get("image_root")
    if json_file:
        print("   annotations: {}\n   images:      {}".format(json_file, image_root), file=out)
        try:
            data = read_annotation_json(json_file)
        except UserDatasetError as e:
            errors.append(str(e))
            return errors, warnings, 0
        fmt = meta.get("evaluator_type") if meta.get("evaluator_type") in ("coco", "lvis") else None
        rep = inspect_annotations(data, json_file, image_root or "", fmt=fmt)
        del data
        errors += rep.errors
        warnings += rep.warnings
        print(
            "   format {}: {} images ({} missing, {} without annotations), {} annotations, {} "
            "categories".format(
                rep.format.upper(),
                rep.num_images,
                len(rep.missing_images),
                rep.images_without_annotations,
                rep.num_annotations,
                len(rep.category_ids),
            ),
            file=out,
        )
        if rep.category_ids:
            by_count = sorted(rep.category_ids, key=lambda c: rep.instances_per_category[c])
            names = dict(zip(rep.category_ids, rep.thing_classes))

            def fmt_cat(c):
                return "{} ({} inst., {} img.)".format(
                    names[c], rep.instances_per_category[c], rep.images_per_category[c]
                )

            print(
                "   rarest:   " + ", ".join(fmt_cat(c) for c in by_count[:_SHOWN_CLASSES]), file=out
            )
            print(
                "   commonest: " + ", ".join(fmt_cat(c) for c in by_count[::-1][:_SHOWN_CLASSES]),
                file=out,
            )
            empty = [names[c] for c in rep.category_ids if rep.instances_per_category[c] == 0]
            if empty:
                warnings.append(
                    "{}: {} categories have no annotation: {}".format(
                        json_file,
                        len(empty),
                        ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else ""),
                    )
                )
            if rep.frequencies:
                groups = Counter(rep.frequencies)
                print(
                    "   LVIS frequency groups: f {} / c {} / r {}".format(
                        groups.get("f", 0), groups.get("c", 0), groups.get("r", 0)
                    ),
                    file=out,
                )
        if errors:
            return errors, warnings, len(rep.thing_classes)
    if load:
        try:
            dicts = DatasetCatalog.get(name)
        except Exception as e:  # report any loader failure as a problem of this dataset
            errors.append("{}: loading failed: {}: {}".format(name, type(e).__name__, e))
            return errors, warnings, 0
        classes = MetadataCatalog.get(name).get("thing_classes") or []
        if not json_file:
            missing = [d["file_name"] for d in dicts if not os.path.isfile(d.get("file_name", ""))]
            if missing:
                errors.append(
                    "{}: {} of {} image files are missing, e.g. {}".format(
                        name, len(missing), len(dicts), ", ".join(missing[:5])
                    )
                )
        logger = logging.getLogger("rs_detectron2.data.sanitize")
        level = logger.level
        logger.setLevel(logging.ERROR)  # counted here instead
        try:
            _, counts = sanitize_dataset_dicts(dicts, len(classes) or None, dataset_name=name)
        finally:
            logger.setLevel(level)
        dropped = {k: v for k, v in counts.items() if v and k != "polygons_removed"}
        print(
            "   loaded {} images; training would drop {} degenerate annotations{}".format(
                len(dicts),
                sum(dropped.values()),
                (
                    " ({})".format(", ".join("{} {}".format(v, k) for k, v in dropped.items()))
                    if dropped
                    else ""
                ),
            ),
            file=out,
        )
        if dropped and not json_file:
            warnings.append(
                "{}: {} degenerate annotations ({}) are dropped in training.".format(
                    name,
                    sum(dropped.values()),
                    ", ".join("{} {}".format(v, k) for k, v in dropped.items()),
                )
            )
        return errors, warnings, len(classes)
    return errors, warnings, len(meta.get("thing_classes") or [])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 problems, 2 usage)."""
    parser = argparse.ArgumentParser(
        prog="python -m rs_detectron2.data.check",
        description="Check that datasets are complete and usable before training.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME|KEY=VALUE",
        help="registered dataset names; KEY=VALUE items override the config",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME:JSON:IMAGE_ROOT",
        help="register and check a COCO/LVIS annotation file (repeatable)",
    )
    parser.add_argument("--config-file", default=None, help="check the datasets of this config")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="only check files and JSON, do not load through the DatasetCatalog",
    )
    args = parser.parse_args(argv)

    from .shapes import SHAPES_DATASET_NAMES, register_shapes
    from .user_datasets import UserDatasetError, parse_dataset_spec, register_user_dataset

    overrides = [n for n in args.names if "=" in n]
    names = [n for n in args.names if "=" not in n]
    if overrides and not args.config_file:
        parser.error("KEY=VALUE overrides need --config-file")
    errors: List[str] = []
    warnings: List[str] = []
    for spec in args.dataset:
        try:
            p = parse_dataset_spec(spec)
            # missing images are reported (with the rest) by check_dataset below
            register_user_dataset(p.name, p.json_file, p.image_root, check_images=False)
            names.append(p.name)
        except UserDatasetError as e:
            errors.append(str(e))
    num_classes, train_names = None, []
    if args.config_file:
        try:
            train_names, test_names, num_classes = dataset_names_from_config(
                args.config_file, overrides
            )
        except Exception as e:
            errors.append(
                "{}: cannot load the config: {}: {}".format(args.config_file, type(e).__name__, e)
            )
            test_names = []
        names += [n for n in train_names + test_names if n not in names]
    if not names and not errors:
        parser.error("give dataset names, --dataset or --config-file")
    if any(n in SHAPES_DATASET_NAMES for n in names):
        register_shapes()  # as train_net.py does (generates the data on first use)

    out = sys.stdout
    classes_of = {}
    for name in dict.fromkeys(names):
        e, w, k = check_dataset(name, load=not args.no_load, out=out)
        errors += e
        warnings += w
        classes_of[name] = k
    if num_classes is not None:
        for name in train_names:
            if classes_of.get(name) and classes_of[name] != num_classes:
                errors.append(
                    "{} has {} classes but the model predicts {}: set model.roi_heads.num_classes "
                    "(or model.num_classes) to {}.".format(
                        name, classes_of[name], num_classes, classes_of[name]
                    )
                )
    for w in warnings:
        print("WARNING: " + w, file=out)
    for e in errors:
        print("ERROR: " + e, file=out)
    failed = bool(errors) or (args.strict and bool(warnings))
    print(
        "{}: {} error(s), {} warning(s)".format(
            "FAILED" if failed else "OK", len(errors), len(warnings)
        ),
        file=out,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
