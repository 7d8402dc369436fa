"""Decoding the image files of a dataset, as training will (Detectron2's ``read_image``, which
applies the EXIF orientation), and comparing their size with the annotation file's.

Both findings are errors (see :mod:`rs_detectron2.data.lint.findings`): an image that cannot be
decoded (unreadable, truncated, not an image) stops training when it is first drawn, and an image
whose decoded size differs from the declared ``height`` / ``width`` stops it with Detectron2's
``SizeMismatchError`` (or, where only the aspect matches, puts every box in the wrong place).
"""

from __future__ import annotations

import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from .findings import ERROR, INFO, Finding, examples
from .geometry_checks import ImageRecord

__all__ = ["check_image_files", "sample_images"]

logger = logging.getLogger(__name__)

_SAMPLE_SEED = 0
_LOG_EVERY = 500  # images, when tqdm is not installed


def sample_images(images: Sequence[ImageRecord], sample: Optional[int]) -> List[ImageRecord]:
    """``sample`` images drawn at random with a fixed seed (all of them when ``sample`` is None or
    not smaller than their number), in their original order."""
    if sample is None or sample >= len(images):
        return list(images)
    keep = set(random.Random(_SAMPLE_SEED).sample(range(len(images)), sample))
    return [im for i, im in enumerate(images) if i in keep]


def _decode(image: ImageRecord) -> Tuple[ImageRecord, Optional[Tuple[int, int]], str]:
    """(image, decoded (height, width) or None, error text)."""
    from detectron2.data.detection_utils import read_image

    try:
        array = read_image(image.file, format="BGR")
    except Exception as e:  # any decoder failure is a finding about this file
        return image, None, f"{type(e).__name__}: {e}"
    return image, tuple(array.shape[:2]), ""


def _progress(results: Iterable, total: int, desc: str, enabled: bool) -> Iterator:
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if not enabled:
        yield from results
    elif tqdm is not None:
        yield from tqdm(results, total=total, desc=desc, unit="img", leave=False)
    else:
        for i, r in enumerate(results, 1):
            if i % _LOG_EVERY == 0 or i == total:
                logger.info(f"{desc}: {i} / {total}")
            yield r


def check_image_files(
    images: Sequence[ImageRecord],
    *,
    dataset: str = "",
    sample: Optional[int] = None,
    progress: bool = True,
    workers: Optional[int] = None,
) -> List[Finding]:
    """Decode the image files and compare their size with the declared one.

    Args:
        images: the images; those whose file does not exist are skipped (the annotation checks
            report them).
        dataset: dataset name the findings carry.
        sample: decode only this many images, drawn at random with a fixed seed
            (:func:`sample_images`); None decodes all.
        progress: show a progress bar (tqdm) or, without tqdm, log every 500 images.
        workers: decoding threads (default: up to 8, one per CPU).

    Returns:
        list of Finding: an info line with the number decoded, then one error per kind of problem
        (``image_unreadable``, ``image_size_mismatch``) with the count, up to five files and the
        fix.
    """
    present = [im for im in images if im.file and os.path.isfile(im.file)]
    chosen = sample_images(present, sample)
    workers = workers or min(8, os.cpu_count() or 1)
    unreadable, mismatched = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = pool.map(_decode, chosen)
        for image, size, error in _progress(decoded, len(chosen), f"{dataset}: images", progress):
            if size is None:
                unreadable.append((image, error))
            elif size != (image.height, image.width):
                mismatched.append((image, size))
    how = f"a random sample of {len(chosen)} (--sample)" if len(chosen) < len(present) else "all"
    out = [Finding(INFO, dataset, f"decoded {how} of {len(present)} image files", code="stats")]
    if unreadable:
        shown = examples(f"{im.file} ({err})" for im, err in unreadable)
        out.append(
            Finding(
                ERROR,
                dataset,
                f"{len(unreadable)} of {len(chosen)} decoded image "
                f"files cannot be read, e.g. {shown}.",
                "replace or re-export these "
                "files, or remove their images and annotations from the JSON",
                unreadable[0][0].file,
                None,
                unreadable[0][0].image_id,
                len(unreadable),
                "image_unreadable",
            )
        )
    if mismatched:
        out.append(_size_finding(dataset, mismatched, len(chosen)))
    return out


def _size_finding(dataset: str, mismatched: list, total: int) -> Finding:
    shown = examples(
        f"{im.file} (declared {im.width} x {im.height}, decoded {w} x {h})"
        for im, (h, w) in mismatched
    )
    swapped = sum(1 for im, (h, w) in mismatched if (h, w) == (im.width, im.height))
    fix = "write each image's decoded 'width' and 'height' into the annotation file"
    if swapped * 2 > len(mismatched):
        fix += (
            " (width and height look swapped: images with an EXIF rotation are decoded "
            "rotated, as Detectron2's read_image does)"
        )
    first = mismatched[0][0]
    message = (
        f"{len(mismatched)} of {total} decoded images differ in size from the annotation "
        f"file (width x height), e.g. {shown}."
    )
    return Finding(
        ERROR,
        dataset,
        message,
        fix,
        first.file,
        None,
        first.image_id,
        len(mismatched),
        "image_size_mismatch",
    )
