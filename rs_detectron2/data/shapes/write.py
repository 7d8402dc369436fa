"""Writing the shapes dataset: PNG images, COCO and LVIS json, and a manifest written last.

Layout under ``root``::

    root/train/000001.png ...                     RGB PNG images, ``image_size`` = (H, W)
    root/val/000001.png ...
    root/annotations/instances_{train,val}.json   COCO format (category ids 1..K, polygons)
    root/annotations/lvis_{train,val}.json        LVIS v1 format (same images, annotations, ids)
    root/manifest.json                            parameters + format version; written last

``area`` is the polygon's (shoelace) area; ``bbox`` is the XYWH extent of the clipped polygon.
The ``frequency``, ``image_count`` and ``instance_count`` of a category are computed from the
training split and written identically into both LVIS files (as LVIS does: validation categories
carry the training statistics). The data is exhaustively annotated, so every image lists every
class absent from it in ``neg_category_ids`` and ``not_exhaustive_category_ids`` is empty: LVIS
evaluation then counts every false positive, like COCO evaluation.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .render import plan_split, render_image
from .spec import (
    FORMAT_VERSION,
    SHAPE_CLASS_SPECS,
    SHAPES_CLASSES,
    SHAPES_DEFAULTS,
    SPLITS,
    ShapesParams,
    frequency_group,
    shapes_root,
)

__all__ = ["generate_shapes", "shapes_paths", "normalize_params", "read_manifest", "is_complete"]

logger = logging.getLogger(__name__)

_URL_PREFIX = "http://rs-shapes.invalid"


def shapes_paths(root: str) -> Dict[str, str]:
    """The files and folders of a dataset under ``root``: ``"root"``, ``"manifest"``,
    ``"train_images"``, ``"val_images"``, ``"coco_train"``, ``"coco_val"``, ``"lvis_train"`` and
    ``"lvis_val"`` (str -> path)."""
    ann = os.path.join(root, "annotations")
    return {
        "root": root,
        "manifest": os.path.join(root, "manifest.json"),
        "train_images": os.path.join(root, "train"),
        "val_images": os.path.join(root, "val"),
        "coco_train": os.path.join(ann, "instances_train.json"),
        "coco_val": os.path.join(ann, "instances_val.json"),
        "lvis_train": os.path.join(ann, "lvis_train.json"),
        "lvis_val": os.path.join(ann, "lvis_val.json"),
    }


def _atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _atomic_write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def normalize_params(num_train, num_val, image_size, seed) -> dict:
    """The manifest's ``params``: ``{"num_train", "num_val", "image_size": [H, W], "seed"}`` as
    ints. Raises ``ValueError`` for empty splits or images smaller than 64 x 64."""
    h, w = (int(v) for v in image_size)
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    if h < 64 or w < 64:
        raise ValueError(f"image_size must be at least 64 x 64, got {image_size}")
    return {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [h, w],
        "seed": int(seed),
    }


def _file_name(image_id: int) -> str:
    return f"{image_id:06d}.png"


def is_complete(paths: Dict[str, str], manifest: dict) -> bool:
    """Whether every JSON file and every image that ``manifest`` promises exists."""
    try:
        counts = {split: int(manifest["params"]["num_" + split]) for split in SPLITS}
    except (KeyError, TypeError, ValueError):
        return False
    for key in ("coco_train", "coco_val", "lvis_train", "lvis_val"):
        if not os.path.isfile(paths[key]):
            return False
    for split in SPLITS:
        folder = paths[split + "_images"]
        for i in range(1, counts[split] + 1):
            if not os.path.isfile(os.path.join(folder, _file_name(i))):
                return False
    return True


def read_manifest(path: str) -> Optional[dict]:
    """The parsed manifest, or None when it is missing or not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def up_to_date(paths: Dict[str, str], params: Optional[dict] = None) -> bool:
    """Whether a complete dataset of the current format (and of ``params``, when given) exists."""
    old = read_manifest(paths["manifest"])
    if old is None or old.get("version") != FORMAT_VERSION:
        return False
    return (params is None or old.get("params") == params) and is_complete(paths, old)


@dataclass
class _Split:
    """The records of one split: COCO images and annotations, LVIS images."""

    images: List[dict] = field(default_factory=list)
    annotations: List[dict] = field(default_factory=list)
    lvis_images: List[dict] = field(default_factory=list)


def _annotation(ann_id: int, image_id: int, k: int, flat: List[float], area: float) -> dict:
    xs, ys = flat[0::2], flat[1::2]
    x0, y0 = min(xs), min(ys)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": k + 1,
        "segmentation": [flat],
        "area": round(area, 2),
        "bbox": [x0, y0, round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
        "iscrowd": 0,
    }


def _lvis_image(image_id: int, split: str, h: int, w: int, cats_here: set) -> dict:
    return {
        "id": image_id,
        "height": h,
        "width": w,
        "license": 1,
        "coco_url": f"{_URL_PREFIX}/{split}/{_file_name(image_id)}",
        "neg_category_ids": [c for c in range(1, len(SHAPES_CLASSES) + 1) if c not in cats_here],
        "not_exhaustive_category_ids": [],
    }


def _remove_stale_images(folder: str, wanted: set) -> None:
    """Remove the PNGs of an earlier run with more images."""
    for fname in sorted(os.listdir(folder)):
        if fname.endswith(".png") and len(fname) == 10 and fname[:6].isdigit():
            if fname not in wanted:
                os.remove(os.path.join(folder, fname))


def _write_split(params: dict, split_idx: int, folder: str) -> _Split:
    """Render and write the images of one split; returns its records."""
    split = SPLITS[split_idx]
    h, w = params["image_size"]
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng([params["seed"], split_idx, 0])
    out = _Split()
    for i, plan in enumerate(plan_split(rng, params["num_" + split], split)):
        image_id = i + 1
        rng = np.random.default_rng([params["seed"], split_idx, 1, image_id])
        img, objects = render_image(rng, plan, h, w)
        fname = _file_name(image_id)
        _atomic_write_bytes(os.path.join(folder, fname), _png_bytes(img))
        out.images.append(
            {"id": image_id, "file_name": fname, "height": h, "width": w, "license": 1}
        )
        for k, flat, area in objects:
            out.annotations.append(_annotation(len(out.annotations) + 1, image_id, k, flat, area))
        cats_here = {k + 1 for k, _, _ in objects}
        out.lvis_images.append(_lvis_image(image_id, split, h, w, cats_here))
    _remove_stale_images(folder, {im["file_name"] for im in out.images})
    return out


def _class_counts(annotations: List[dict]) -> Tuple[List[int], List[int]]:
    """Per class (``SHAPES_CLASSES`` order): images that contain it and its instances."""
    img_count = [0] * len(SHAPES_CLASSES)
    inst_count = [0] * len(SHAPES_CLASSES)
    seen = set()
    for a in annotations:
        inst_count[a["category_id"] - 1] += 1
        if (a["image_id"], a["category_id"]) not in seen:
            seen.add((a["image_id"], a["category_id"]))
            img_count[a["category_id"] - 1] += 1
    return img_count, inst_count


def _lvis_categories(train: _Split, num_train: int) -> List[dict]:
    """LVIS categories with the training split's statistics and frequency groups."""
    img_count, inst_count = _class_counts(train.annotations)
    return [
        {
            "id": k + 1,
            "name": spec.name,
            "synset": f"{spec.name}.n.01",
            "synonyms": [spec.name],
            "def": spec.definition,
            "frequency": frequency_group(img_count[k], num_train),
            "image_count": img_count[k],
            "instance_count": inst_count[k],
        }
        for k, spec in enumerate(SHAPE_CLASS_SPECS)
    ]


def _write_json_files(paths: Dict[str, str], params: dict, splits: Dict[str, _Split]) -> list:
    """Write the COCO and LVIS files of both splits; returns the LVIS categories."""
    lvis_categories = _lvis_categories(splits["train"], params["num_train"])
    coco_categories = [
        {"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPES_CLASSES)
    ]
    licenses = [{"id": 1, "name": "generated by rs_detectron2 (no rights reserved)", "url": ""}]
    for split in SPLITS:
        info = {
            "description": f"rs_shapes {split} split (synthetic, rs_detectron2.data.shapes)",
            "version": str(FORMAT_VERSION),
            "year": 2024,
            "params": params,
        }
        s = splits[split]
        common = {"info": info, "licenses": licenses}
        _atomic_write_json(
            paths["coco_" + split],
            dict(common, images=s.images, annotations=s.annotations, categories=coco_categories),
        )
        _atomic_write_json(
            paths["lvis_" + split],
            dict(
                common, images=s.lvis_images, annotations=s.annotations, categories=lvis_categories
            ),
        )
    return lvis_categories


def generate_shapes(
    root: Optional[str] = None,
    num_train: int = SHAPES_DEFAULTS.num_train,
    num_val: int = SHAPES_DEFAULTS.num_val,
    image_size: Tuple[int, int] = SHAPES_DEFAULTS.image_size,
    seed: int = SHAPES_DEFAULTS.seed,
    overwrite: bool = False,
) -> Dict[str, str]:
    """Generate (or reuse) the shapes dataset under ``root``.

    Args:
        root: output folder; ``None`` means :func:`shapes_root`.
        num_train, num_val, image_size, seed: see :class:`ShapesParams`; the output (JSON and PNG
            bytes) is a deterministic function of them.
        overwrite: regenerate even if an up-to-date dataset is present.

    Idempotent: if ``root/manifest.json`` records the same parameters and format version and every
    file is present, nothing is written. Otherwise everything is regenerated (PNGs of an older,
    larger run that are not part of the new one are removed). Every file is written to a temporary
    name and moved into place with ``os.replace``; the manifest is written last, so an interrupted
    run is redone next time.

    Returns:
        dict of str -> str: :func:`shapes_paths` of ``root`` and ``"status"``: ``"generated"`` or
        ``"up-to-date"`` (nothing written).
    """
    root = shapes_root() if root is None else os.fspath(root)
    params = normalize_params(num_train, num_val, image_size, seed)
    paths = shapes_paths(root)
    if not overwrite and up_to_date(paths, params):
        return dict(paths, status="up-to-date")

    if os.path.exists(paths["manifest"]):
        os.remove(paths["manifest"])  # the dataset is not valid until the new manifest exists
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    splits = {
        split: _write_split(params, i, paths[split + "_images"]) for i, split in enumerate(SPLITS)
    }
    lvis_categories = _write_json_files(paths, params, splits)
    manifest = {
        "version": FORMAT_VERSION,
        "params": params,
        "train_class_image_count": {c["name"]: c["image_count"] for c in lvis_categories},
        "train_class_frequency": {c["name"]: c["frequency"] for c in lvis_categories},
    }
    _atomic_write_json(paths["manifest"], manifest)
    logger.info(f"Generated the rs_shapes dataset ({params}) under {root}")
    return dict(paths, status="generated")


def params_of(p: ShapesParams) -> dict:
    """:class:`ShapesParams` as keyword arguments of :func:`generate_shapes`."""
    return {
        "num_train": p.num_train,
        "num_val": p.num_val,
        "image_size": tuple(p.image_size),
        "seed": p.seed,
    }
