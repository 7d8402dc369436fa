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

Detections are kept at score >= ``--threshold`` (default 0.5), or at their class's LRP-optimal
threshold from ``--lrp-thresholds FILE`` (written by ``train_net.py --eval-only
--lrp-thresholds-out FILE``, see docs/evaluation.md). ``KEY=VALUE`` overrides the config (e.g.
``model.roi_heads.num_classes=2``). Files that cannot be read are skipped and listed at the end;
exit status 1 when no input could be read or the weights do not fit, 2 for bad arguments.
"""

import argparse
import glob
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils.visualizer import Visualizer

from rs_detectron2.data import (
    UserDatasetError,
    add_dataset_argument,
    register_shapes,
    register_user_datasets,
)
from rs_detectron2.engine.predictor import LazyPredictor, WeightsMismatchError
from rs_detectron2.evaluation import coco_results_from_predictions

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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")
DEFAULT_THRESHOLD = 0.5  # Detectron2 demo's default confidence threshold
# Pictures are drawn at least this many pixels on their long side, so labels of small images read.
MIN_PICTURE_SIDE = 512
MAX_SCALE = 4.0
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class InputError(ValueError):
    """A ``--input`` that names nothing."""


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """The files of ``--input``: files as given, the images and videos of folders (by extension,
    sorted), and the matches of glob patterns (sorted), without repeats.

    Raises:
        InputError: a pattern that matches nothing, or a folder without images or videos.
    """
    found: List[str] = []
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    for pattern in patterns:
        if os.path.isdir(pattern):
            files = sorted(
                os.path.join(pattern, f)
                for f in os.listdir(pattern)
                if f.lower().endswith(known) and os.path.isfile(os.path.join(pattern, f))
            )
            if not files:
                raise InputError(f"--input {pattern}: the folder holds no image or video files")
        elif os.path.exists(pattern):
            files = [pattern]
        else:
            files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
            if not files:
                raise InputError(f"--input {pattern}: no such file, folder or matching files")
        found += [f for f in files if f not in found]
    return found


def instances_to_results(instances, image_id: int, metadata) -> List[dict]:
    """One image's predictions in COCO results format, with the dataset's category ids.

    Args:
        instances (Instances): on the CPU, with ``pred_boxes``, ``scores``, ``pred_classes`` and
            optionally ``pred_masks``.
        image_id: the ``image_id`` of the results.
        metadata: with ``thing_dataset_id_to_contiguous_id`` the class indices are mapped back to
            the dataset's category ids; without it they are kept.

    Returns:
        list[dict]: ``image_id``, ``category_id``, ``bbox`` (XYWH pixels), ``score`` and, with
        masks, ``segmentation`` (RLE with str counts).
    """
    preds = [{"instances": instances_to_coco_json(instances, image_id)}]
    return coco_results_from_predictions(preds, metadata)


def picture_scale(height: int, width: int) -> float:
    """The ``Visualizer`` scale that draws an image at least MIN_PICTURE_SIDE on its long side."""
    return min(MAX_SCALE, max(1.0, MIN_PICTURE_SIDE / max(height, width)))


def draw_prediction(image_rgb: np.ndarray, instances, metadata) -> np.ndarray:
    """Boxes, masks, class names and scores of ``instances`` over ``image_rgb`` (H x W x 3 RGB);
    returns the RGB picture (scaled by :func:`picture_scale`)."""
    scale = picture_scale(*image_rgb.shape[:2])
    vis = Visualizer(image_rgb, metadata, scale=scale)
    return vis.draw_instance_predictions(instances).get_image()


def draw_ground_truth(image_rgb: np.ndarray, record: dict, metadata) -> np.ndarray:
    """The annotations of a Detectron2 dataset dict over ``image_rgb``, at the scale of
    :func:`draw_prediction`; returns the RGB picture."""
    scale = picture_scale(*image_rgb.shape[:2])
    vis = Visualizer(image_rgb, metadata, scale=scale)
    return vis.draw_dataset_dict(record).get_image()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """RGB pictures of equal height next to each other, each under its title, 8 px apart.

    Returns:
        np.ndarray: H' x W' x 3 uint8, RGB.
    """
    height = max(p.shape[0] for p in panels)
    band = max(20, height // 16)
    gap = 8
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height + band, width, 3), 255, dtype=np.uint8)
    x = 0
    for panel in panels:
        canvas[band : band + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = _font(int(band * 0.7))
    x = 0
    for panel, title in zip(panels, titles):
        draw.text((x + 4, band * 0.1), title, fill=(0, 0, 0), font=font)
        x += panel.shape[1] + gap
    return np.asarray(picture)


@dataclass
class Item:
    """One image to run the model on and where its outputs go."""

    image: np.ndarray  # BGR
    source: str  # the file
    frame: Optional[int]  # the frame of a video, None for an image
    image_id: int
    record: Optional[dict]  # the ground truth, when the image is in --gt-dataset


class Run:
    """The state of one predict run: inputs, outputs and what was skipped."""

    def __init__(self, args, predictor, metadata, records):
        self.args = args
        self.predictor = predictor
        self.metadata = metadata
        self.records = records  # realpath -> dataset dict
        self.skipped: List[Tuple[str, str]] = []
        self.results: List[dict] = []
        self.images: List[dict] = []
        self.used_names: Dict[str, int] = {}
        self.writers: Dict[str, object] = {}
        self.not_in_dataset = 0
        self.bar = None  # the progress bar, which counts skipped files too
        self.next_id = 1 + max([r["image_id"] for r in records.values() if _int(r)] or [0])

    def unique_name(self, path: str) -> str:
        stem = os.path.splitext(os.path.basename(path))[0]
        n = self.used_names.get(stem, 0)
        self.used_names[stem] = n + 1
        return stem if n == 0 else f"{stem}_{n}"

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _int(record) -> bool:
    return isinstance(record.get("image_id"), int)


def _frame_count(path: str) -> int:
    import cv2

    cap = cv2.VideoCapture(path)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return max(count, 0)


def _video_frames(run: Run, path: str) -> Iterator[Item]:
    try:
        import cv2
    except ImportError:
        _skip(run, path, "reading videos needs OpenCV (pip install opencv-python)")
        return
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        _skip(run, path, "OpenCV cannot open this video")
        return
    run.writers[path] = {"fps": cap.get(cv2.CAP_PROP_FPS) or 25.0, "name": run.unique_name(path)}
    frame_index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield Item(frame, path, frame_index, run.new_id(), None)
        frame_index += 1
    cap.release()
    if frame_index == 0:
        run.skipped.append((path, "OpenCV read no frame from this video"))


def _skip(run: Run, path: str, reason: str) -> None:
    run.skipped.append((path, reason))
    if run.bar is not None:
        run.bar.update(1)


def _items(run: Run, files: Sequence[str]) -> Iterator[Item]:
    for path in files:
        if path.lower().endswith(VIDEO_EXTENSIONS):
            yield from _video_frames(run, path)
            continue
        try:
            image = read_image(path, format="BGR")
        except Exception as e:  # PIL raises several types for files it cannot decode
            _skip(run, path, f"{type(e).__name__}: {e}")
            continue
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            _skip(run, path, f"not an 8-bit colour image ({image.shape}, {image.dtype})")
            continue
        record = run.records.get(os.path.realpath(path))
        run.not_in_dataset += int(bool(run.records) and record is None)
        image_id = record["image_id"] if record is not None and _int(record) else run.new_id()
        yield Item(image, path, None, image_id, record)


def _batches(items: Iterator[Item], size: int) -> Iterator[List[Item]]:
    batch: List[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _picture(run: Run, item: Item, instances) -> np.ndarray:
    rgb = np.ascontiguousarray(item.image[:, :, ::-1])
    drawn = draw_prediction(rgb, instances, run.metadata)
    if item.record is None:
        return drawn
    truth = draw_ground_truth(rgb, item.record, run.metadata)
    count = len(item.record.get("annotations", []))
    return side_by_side(
        [drawn, truth], [f"prediction ({len(instances)})", f"ground truth ({count})"]
    )


def _save(run: Run, item: Item, picture: np.ndarray) -> str:
    out = run.args.output
    if item.frame is None:
        path = os.path.join(out, f"{run.unique_name(item.source)}.png")
        Image.fromarray(picture).save(path)
        return path
    video = run.writers[item.source]
    if run.args.video_output == "video":
        path = os.path.join(out, f"{video['name']}.mp4")
        if "writer" not in video:
            import cv2

            h, w = picture.shape[:2]
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), video["fps"], (w, h))
            video["writer"] = writer if writer.isOpened() else None
            if video["writer"] is None:
                print(
                    f"OpenCV cannot write {path}: writing its frames as pictures", file=sys.stderr
                )
        if video["writer"] is not None:
            video["writer"].write(np.ascontiguousarray(picture[:, :, ::-1]))
            return f"{path}#frame={item.frame}"
    folder = os.path.join(out, video["name"])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"frame_{item.frame:06d}.png")
    Image.fromarray(picture).save(path)
    return path


def _process(run: Run, batch: List[Item]) -> None:
    outputs = run.predictor([item.image for item in batch])
    for item, instances in zip(batch, outputs):
        run.results += instances_to_results(instances, item.image_id, run.metadata)
        picture = _save(run, item, _picture(run, item, instances))
        entry = {
            "id": item.image_id,
            "file_name": os.path.abspath(item.source),
            "height": int(item.image.shape[0]),
            "width": int(item.image.shape[1]),
            "picture": picture,
            "detections": len(instances),
        }
        if item.frame is not None:
            entry["frame"] = item.frame
        run.images.append(entry)


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
        register_shapes()
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
        )
    except WeightsMismatchError as e:
        return _error(str(e), 1)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        return _error(str(e), 2)

    os.makedirs(args.output, exist_ok=True)
    run = Run(args, predictor, predictor.metadata, records)
    videos = [f for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
    total = len(files) - len(videos) + sum(_frame_count(v) for v in videos)
    with tqdm(total=total, unit="img", desc="predict", file=sys.stderr) as run.bar:
        for batch in _batches(_items(run, files), args.batch_size):
            _process(run, batch)
            run.bar.update(len(batch))
    for video in run.writers.values():
        if video.get("writer") is not None:
            video["writer"].release()
    return _finish(run)


def _finish(run: Run) -> int:
    detections = os.path.join(run.args.output, "detections.json")
    with open(detections, "w") as f:
        json.dump(run.results, f)
    index = os.path.join(run.args.output, "images.json")
    names = run.metadata.get("thing_classes", None) or []
    id_map = run.metadata.get("thing_dataset_id_to_contiguous_id", None)
    ids = {v: k for k, v in id_map.items()} if id_map else {k: k for k in range(len(names))}
    with open(index, "w") as f:
        json.dump(
            {
                "images": run.images,
                "categories": [{"id": ids[k], "name": n} for k, n in enumerate(names)],
                "skipped": [{"file_name": p, "reason": r} for p, r in run.skipped],
            },
            f,
            indent=1,
        )
    print(
        f"predict: {len(run.images)} images, {len(run.results)} detections -> {detections}; "
        f"pictures and {os.path.basename(index)} in {run.args.output}"
    )
    if run.not_in_dataset:
        print(
            f"predict: {run.not_in_dataset} images are not files of --gt-dataset "
            f"{run.args.gt_dataset}: drawn without ground truth"
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
