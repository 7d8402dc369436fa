"""Check datasets before a long run: the command line of the dataset linter
(:mod:`rs_detectron2.data.lint`).

    python -m rs_detectron2.data.check NAME [NAME ...]
    python -m rs_detectron2.data.check --dataset NAME:JSON:IMAGE_ROOT [--dataset ...]
    python -m rs_detectron2.data.check --config-file CFG [KEY=VALUE ...] [--dataset ...]

NAME is a registered dataset (Detectron2's builtin ``coco_2017_*`` / ``lvis_v1_*`` under
``$DETECTRON2_DATASETS``, ``rs_shapes_*``, or one given with ``--dataset``). With ``--config-file``
the config's ``dataloader.train.dataset.names`` and ``dataloader.test.dataset.names`` are checked
(``KEY=VALUE`` overrides apply first, as in train_net.py), with the model's number of classes and
mask format against the training sets.

For each dataset: the annotation file (valid COCO/LVIS JSON, ids, categories, counts), every image
file (exists; decoded and its size compared with the JSON, ``--sample N`` for large sets,
``--no-images`` to skip), the geometry (boxes against the image and against their own masks, masks
of zero area, RLE sizes), then the dataset is loaded the way training loads it (``--no-load`` to
skip). Prints a report (:func:`~rs_detectron2.data.lint.format_findings`); exits with 1 when
there is an error (with ``--strict`` also on warnings), else 0.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence, Tuple

from .lint import (
    ERROR,
    ConfigFacts,
    Finding,
    check_dataset,
    config_facts,
    dataset_names_from_config,
    exit_code,
    format_findings,
)
from .user_datasets import (
    UserDatasetError,
    add_dataset_argument,
    parse_dataset_spec,
    register_user_dataset,
)

__all__ = ["check_dataset", "dataset_names_from_config", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
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
    add_dataset_argument(parser)
    parser.add_argument("--config-file", default=None, help="check the datasets of this config")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--no-load", action="store_true", help="do not load the datasets through the DatasetCatalog"
    )
    parser.add_argument("--no-images", action="store_true", help="do not decode the image files")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="decode N images per dataset, drawn at random (fixed seed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _register_specs(specs: Sequence[str]) -> Tuple[List[str], List[Finding]]:
    """Register the ``--dataset`` values; missing images are left to :func:`check_dataset`."""
    names, findings = [], []
    for spec in specs:
        try:
            p = parse_dataset_spec(spec)
        except UserDatasetError as e:
            findings.append(Finding(ERROR, "", str(e), "give NAME:JSON:IMAGE_ROOT", code="spec"))
            continue
        try:
            register_user_dataset(p.name, p.json_file, p.image_root, check_images=False)
            names.append(p.name)
        except UserDatasetError as e:
            findings += e.findings or [Finding(ERROR, p.name, str(e), code="register")]
    return names, findings


def _load_config(args, overrides) -> Tuple[ConfigFacts, List[Finding]]:
    try:
        return config_facts(args.config_file, overrides), []
    except Exception as e:  # any config failure is reported, with the others
        message = f"{args.config_file}: cannot load the config: {type(e).__name__}: {e}"
        return ConfigFacts(), [Finding(ERROR, "", message, code="config")]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 problems, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = [n for n in args.names if "=" in n]
    names = [n for n in args.names if "=" not in n]
    if overrides and not args.config_file:
        parser.error("KEY=VALUE overrides need --config-file")
    if args.sample is not None and args.sample < 1:
        parser.error("--sample needs a positive number")
    registered, findings = _register_specs(args.dataset)
    names += registered
    facts = ConfigFacts()
    if args.config_file:
        facts, problems = _load_config(args, overrides)
        findings += problems
        names += [n for n in facts.train_names + facts.test_names if n not in names]
        if facts.class_count_problem:
            findings.append(
                Finding(
                    ERROR, "", f"{args.config_file}: {facts.class_count_problem}", code="config"
                )
            )
    if not names and not findings:
        parser.error("give dataset names, --dataset or --config-file")
    for name in dict.fromkeys(names):
        train = name in facts.train_names
        found = check_dataset(
            name,
            num_classes=facts.num_classes if train else None,
            num_classes_key=facts.num_classes_key,
            mask_format=facts.mask_format if train else None,
            needs_masks=facts.needs_masks and train,
            box_only_config=facts.box_only_config,
            images=not args.no_images,
            sample=args.sample,
            progress=not args.no_progress,
            load=not args.no_load,
        )
        if args.config_file and not train:  # only the training mapper reads masks
            found = [f for f in found if f.code != "mask_format"]
        findings += found
    print(format_findings(findings, strict=args.strict))
    return exit_code(findings, args.strict)


if __name__ == "__main__":
    sys.exit(main())
