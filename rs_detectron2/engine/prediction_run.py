"""Running a predictor over image and video files, as ``python -m rs_detectron2.predict`` does:
the counterpart of Detectron2's ``demo/predictor.py`` for LazyConfig models.

:func:`expand_inputs` turns files, folders and glob patterns into a list of files;
:class:`PredictionRun` reads them (a video frame by frame, with OpenCV), runs the predictor in
batches, draws each image's detections (:mod:`rs_detectron2.utils.visualizer`), writes the pictures
and collects the detections in COCO results format (:func:`instances_to_results`). Files that
cannot be read are skipped and listed, never fatal.
"""

import glob
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from detectron2.data.detection_utils import read_image
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from ..evaluation import coco_results_from_predictions
from ..utils.visualizer import prediction_picture

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "InputError",
    "PredictionRun",
    "expand_inputs",
    "instances_to_results",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")


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


@dataclass
class _Item:
    """One image to run the model on and where its outputs go."""

    image: np.ndarray  # BGR
    source: str  # the file
    frame: Optional[int]  # the frame of a video, None for an image
    image_id: int
    record: Optional[dict]  # the ground truth, when the image is in the dataset of the run


def _has_int_id(record) -> bool:
    return isinstance(record.get("image_id"), int)


def _frame_count(path: str) -> int:
    import cv2

    cap = cv2.VideoCapture(path)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return max(count, 0)


def _batches(items: Iterator[_Item], size: int) -> Iterator[List[_Item]]:
    batch: List[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class PredictionRun:
    """Run a predictor over image and video files, drawing and collecting its detections.

    Each image gets a picture ``<name>.png`` in ``output_dir`` (its predictions, and its ground
    truth beside when it is a file of ``records``); a video gets ``<name>.mp4`` of its drawn frames,
    or, with ``video_output="frames"`` (or when OpenCV cannot write the video), a folder ``<name>/``
    of ``frame_<n>.png``. Repeated names get ``_1``, ``_2``, ... Images of ``records`` keep their
    ``image_id``; other images and frames get new ids after the largest of ``records``.

    Attributes:
        results (list[dict]): every kept detection, in COCO results format.
        images (list[dict]): one entry per image or frame: ``id``, ``file_name``, ``height``,
            ``width``, ``picture`` (the file, ``video.mp4#frame=n`` in a video) and
            ``detections`` (and ``frame`` for video frames).
        skipped (list[tuple[str, str]]): the files that could not be read, with the reason.
        not_in_dataset (int): images that are not files of ``records`` (when it is not empty).
    """

    def __init__(
        self,
        predictor: Callable[[List[np.ndarray]], list],
        metadata,
        output_dir: str,
        *,
        records: Optional[Mapping[str, dict]] = None,
        batch_size: int = 4,
        video_output: str = "video",
    ):
        """
        Args:
            predictor: takes a list of BGR images (H x W x 3 ``uint8``) and returns one
                ``Instances`` per image (e.g. :class:`~rs_detectron2.engine.LazyPredictor`).
            metadata: the classes' metadata, for the pictures and the category ids.
            output_dir: where the pictures go (it must exist).
            records: ground truth: ``os.path.realpath`` of an image file -> its dataset dict.
            batch_size: images per predictor call.
            video_output: ``"video"`` or ``"frames"``, how a video's drawn frames are written.
        """
        self.predictor = predictor
        self.metadata = metadata
        self.output_dir = output_dir
        self.records = dict(records or {})
        self.batch_size = batch_size
        self.video_output = video_output
        self.skipped: List[Tuple[str, str]] = []
        self.results: List[dict] = []
        self.images: List[dict] = []
        self.not_in_dataset = 0
        self._used_names: Dict[str, int] = {}
        self._videos: Dict[str, dict] = {}
        self._bar = None  # the progress bar, which counts skipped files too
        ids = [r["image_id"] for r in self.records.values() if _has_int_id(r)]
        self._next_id = 1 + max(ids or [0])

    def run(self, files: Sequence[str]) -> None:
        """Predict, draw and write every file of ``files`` (images and videos, by extension),
        with a progress bar on stderr."""
        videos = [f for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
        total = len(files) - len(videos) + sum(_frame_count(v) for v in videos)
        with tqdm(total=total, unit="img", desc="predict", file=sys.stderr) as self._bar:
            for batch in _batches(self._items(files), self.batch_size):
                self._process(batch)
                self._bar.update(len(batch))
        for video in self._videos.values():
            if video.get("writer") is not None:
                video["writer"].release()

    def index(self) -> dict:
        """The run's index (``images.json``): ``images`` (see :attr:`images`), ``categories``
        (the dataset's category ids and class names) and ``skipped`` (file and reason)."""
        names = self.metadata.get("thing_classes", None) or []
        id_map = self.metadata.get("thing_dataset_id_to_contiguous_id", None)
        ids = {v: k for k, v in id_map.items()} if id_map else {k: k for k in range(len(names))}
        return {
            "images": self.images,
            "categories": [{"id": ids[k], "name": n} for k, n in enumerate(names)],
            "skipped": [{"file_name": p, "reason": r} for p, r in self.skipped],
        }

    def _unique_name(self, path: str) -> str:
        stem = os.path.splitext(os.path.basename(path))[0]
        n = self._used_names.get(stem, 0)
        self._used_names[stem] = n + 1
        return stem if n == 0 else f"{stem}_{n}"

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        if self._bar is not None:
            self._bar.update(1)

    def _video_frames(self, path: str) -> Iterator[_Item]:
        try:
            import cv2
        except ImportError:
            self._skip(path, "reading videos needs OpenCV (pip install opencv-python)")
            return
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            self._skip(path, "OpenCV cannot open this video")
            return
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        self._videos[path] = {"fps": fps, "name": self._unique_name(path)}
        frame_index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield _Item(frame, path, frame_index, self._new_id(), None)
            frame_index += 1
        cap.release()
        if frame_index == 0:
            self.skipped.append((path, "OpenCV read no frame from this video"))

    def _items(self, files: Sequence[str]) -> Iterator[_Item]:
        for path in files:
            if path.lower().endswith(VIDEO_EXTENSIONS):
                yield from self._video_frames(path)
                continue
            try:
                image = read_image(path, format="BGR")
            except Exception as e:  # PIL raises several types for files it cannot decode
                self._skip(path, f"{type(e).__name__}: {e}")
                continue
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                self._skip(path, f"not an 8-bit colour image ({image.shape}, {image.dtype})")
                continue
            record = self.records.get(os.path.realpath(path))
            self.not_in_dataset += int(bool(self.records) and record is None)
            if record is not None and _has_int_id(record):
                image_id = record["image_id"]
            else:
                image_id = self._new_id()
            yield _Item(image, path, None, image_id, record)

    def _save(self, item: _Item, picture: np.ndarray) -> str:
        out = self.output_dir
        if item.frame is None:
            path = os.path.join(out, f"{self._unique_name(item.source)}.png")
            Image.fromarray(picture).save(path)
            return path
        video = self._videos[item.source]
        if self.video_output == "video":
            path = os.path.join(out, f"{video['name']}.mp4")
            if "writer" not in video:
                import cv2

                h, w = picture.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                writer = cv2.VideoWriter(path, fourcc, video["fps"], (w, h))
                video["writer"] = writer if writer.isOpened() else None
                if video["writer"] is None:
                    print(
                        f"OpenCV cannot write {path}: writing its frames as pictures",
                        file=sys.stderr,
                    )
            if video["writer"] is not None:
                video["writer"].write(np.ascontiguousarray(picture[:, :, ::-1]))
                return f"{path}#frame={item.frame}"
        folder = os.path.join(out, video["name"])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"frame_{item.frame:06d}.png")
        Image.fromarray(picture).save(path)
        return path

    def _process(self, batch: List[_Item]) -> None:
        outputs = self.predictor([item.image for item in batch])
        for item, instances in zip(batch, outputs):
            self.results += instances_to_results(instances, item.image_id, self.metadata)
            rgb = np.ascontiguousarray(item.image[:, :, ::-1])
            picture = prediction_picture(rgb, instances, self.metadata, item.record)
            entry = {
                "id": item.image_id,
                "file_name": os.path.abspath(item.source),
                "height": int(item.image.shape[0]),
                "width": int(item.image.shape[1]),
                "picture": self._save(item, picture),
                "detections": len(instances),
            }
            if item.frame is not None:
                entry["frame"] = item.frame
            self.images.append(entry)
