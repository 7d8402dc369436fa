"""Run a trained model on images (or a video) and look at what it finds.

    python -m rs_detectron2.predict --config-file CFG --weights W --input PATHS_OR_GLOBS_OR_DIR \\
        [--output DIR] [--threshold T | --lrp-thresholds FILE] [--device D] [--batch-size B] \\
        [--gt-dataset NAME] [--dataset NAME:JSON:ROOT] [--video-output video|frames] [KEY=VALUE ...]

Writes to ``--output`` (default ``output/predict``): one picture per image, ``<name>.png``, drawn
by Detectron2's ``Visualizer`` (boxes, masks, class names and scores), with the ground truth beside
it when the image belongs to ``--gt-dataset``; for a video (when OpenCV can read it) a video of
the drawn frames, or one picture per frame; ``detections.json``, every kept detection in COCO
results format (``image_id``, ``category_id`` of the dataset, ``bbox`` XYWH, ``score``,
``segmentation`` RLE for mask models); ``images.json``, the ``image_id`` -> file (and frame) map,
the picture written for it and the files that were skipped.

The class names and the dataset's category ids are those the weights were trained on (saved with
them by ``train_net.py``), as are the class count, input format, pixel mean / std and test resize:
the training's overrides need not be repeated. ``--gt-dataset`` must have the same classes.

Detections are kept at score >= ``--threshold`` (default 0.5), or at their class's LRP-optimal
threshold from ``--lrp-thresholds FILE`` (written by ``train_net.py --eval-only
--lrp-thresholds-out FILE``, see docs/evaluation.md). ``KEY=VALUE`` overrides the config (e.g.
``model.roi_heads.num_classes=2``). Files that cannot be read are skipped and listed at the end;
exit status 1 when no input could be read or the weights do not fit, 2 for bad arguments.
"""

import argparse
import json
import os
import re
import sys
from typing import Dict, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .data import UserDatasetError, add_dataset_argument, register_user_datasets
from .engine.prediction_run import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    InputError,
    PredictionRun,
    expand_inputs,
    instances_to_results,
)
from .engine.predictor import LazyPredictor, WeightsMismatchError
from .utils.visualizer import draw_ground_truth, draw_prediction, side_by_side

# The drawing and file-running names are re-exported: they were defined here before.
__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "argument_parser",
    "draw_ground_truth",
    "draw_prediction",
    "expand_inputs",
    "instances_to_results",
    "main",
    "side_by_side",
]

DEFAULT_THRESHOLD = 0.5  # Detectron2 demo's default confidence threshold
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rs_detectron2.predict",
        description="Run a trained model on images or a video: pictures of its detections and "
        "one JSON of them in COCO results format.",
    )
    parser.add_argument("--config-file", required=True, help="LazyConfig file or shipped config")
    parser.add_argument(
        "--weights", default=None, help="checkpoint; default: the config's train.init_checkpoint"
    )
    parser.add_argument(
        "--input",
        nargs="+",
        default=[],
        metavar="PATH",
        help="image or video files, folders (their images and videos) or glob patterns; default "
        "with --gt-dataset: the dataset's images",
    )
    parser.add_argument("--output", default=os.path.join("output", "predict"), help="folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"keep detections with score >= T, every class (default {DEFAULT_THRESHOLD})",
    )
    group.add_argument(
        "--lrp-thresholds",
        default=None,
        metavar="FILE",
        help="per-class LRP-optimal thresholds (train_net.py --eval-only --lrp-thresholds-out)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ...; default: CUDA if any"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call")
    parser.add_argument(
        "--gt-dataset",
        default=None,
        metavar="NAME",
        help="a registered dataset: its images get their ground truth drawn beside, its class "
        "names and category ids are used",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many input files (the first ones)"
    )
    parser.add_argument(
        "--video-output",
        choices=("video", "frames"),
        default="video",
        help="a video's drawn frames as an .mp4 video or as one picture per frame",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="run even if the checkpoint's keys do not all match the model (the others stay "
        "randomly initialised)",
    )
    add_dataset_argument(parser)
    parser.add_argument("opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def _check_args(parser, args) -> None:
    # KEY=VALUE overrides written after --input land in args.input
    moved = [s for s in args.input if _OVERRIDE.match(s) and not os.path.exists(s)]
    args.input = [s for s in args.input if s not in moved]
    args.opts = list(args.opts) + moved
    if not args.input and not args.gt_dataset:
        parser.error("--input is required (or --gt-dataset NAME to run on a dataset's images)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {args.threshold}")
    bad = [s for s in args.opts if "=" not in s]
    if bad:
        parser.error(f"overrides must be KEY=VALUE, got {bad}")


def _dataset_records(name: str) -> Dict[str, dict]:
    if name not in DatasetCatalog.list():
        raise ValueError(
            f"--gt-dataset {name} is not registered (--dataset {name}:JSON:IMAGE_ROOT registers "
            "a COCO-format file)"
        )
    return {os.path.realpath(r["file_name"]): r for r in DatasetCatalog.get(name)}


def _error(message: str, status: int) -> int:
    print(f"predict: error: {message}", file=sys.stderr)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status (0, 1: nothing readable or unusable weights,
    2: bad arguments)."""
    parser = argument_parser()
    args = parser.parse_intermixed_args(argv)
    _check_args(parser, args)
    try:
        register_user_datasets(args.dataset)
        records = _dataset_records(args.gt_dataset) if args.gt_dataset else {}
        files = expand_inputs(args.input) if args.input else sorted(records)
    except (InputError, UserDatasetError, ValueError) as e:
        return _error(str(e), 2)
    if args.limit is not None:
        files = files[: args.limit]
    metadata = MetadataCatalog.get(args.gt_dataset) if args.gt_dataset else None
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    try:
        predictor = LazyPredictor(
            args.config_file,
            args.weights,
            device=args.device,
            score_threshold=None if args.lrp_thresholds else threshold,
            class_thresholds=args.lrp_thresholds,
            overrides=args.opts,
            metadata=metadata,
            allow_partial_weights=args.allow_partial_weights,
        )
    except WeightsMismatchError as e:
        return _error(f"{e} (--allow-partial-weights runs it anyway)", 1)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        return _error(str(e), 2)
    for warning in predictor.warnings:
        print(f"predict: warning: {warning}", file=sys.stderr)

    os.makedirs(args.output, exist_ok=True)
    run = PredictionRun(
        predictor,
        predictor.metadata,
        args.output,
        records=records,
        batch_size=args.batch_size,
        video_output=args.video_output,
    )
    run.run(files)
    return _finish(run, args)


def _finish(run: PredictionRun, args) -> int:
    detections = os.path.join(args.output, "detections.json")
    with open(detections, "w") as f:
        json.dump(run.results, f)
    index = os.path.join(args.output, "images.json")
    with open(index, "w") as f:
        json.dump(run.index(), f, indent=1)
    print(
        f"predict: {len(run.images)} images, {len(run.results)} detections -> {detections}; "
        f"pictures and {os.path.basename(index)} in {args.output}"
    )
    if run.not_in_dataset:
        print(
            f"predict: {run.not_in_dataset} images are not files of --gt-dataset "
            f"{args.gt_dataset}: drawn without ground truth"
        )
    if run.skipped:
        print(f"predict: skipped {len(run.skipped)} files that could not be read:", file=sys.stderr)
        for path, reason in run.skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
    if not run.images:
        return _error("no input could be read", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
