"""A small, deterministic, long-tailed instance-segmentation dataset of rendered shapes.

The dataset ("rs_shapes") is the workhorse of the demo and the tests: tiny detectors are trained on it on CPU
for a few hundred iterations, so objects are large, flat-coloured polygons with one distinct form and colour
per class over a light, smoothly shaded background.

Layout written by :func:`generate_shapes` under ``root``::

    root/train/000001.png ...                 RGB PNG images, ``image_size`` = (H, W)
    root/val/000001.png ...
    root/annotations/instances_{train,val}.json   COCO format (category ids 1..K, polygon segmentation)
    root/annotations/lvis_{train,val}.json        LVIS v1 format (same images, annotations and ids)
    root/manifest.json                            parameters + format version; written last

Geometry. Every annotation polygon is exactly the region that was painted: the polygon (regular polygons,
circles/ellipses as 32-gons, star, cross, crescent), after clipping to the image rectangle and rounding
to 0.01 px, is rasterised with pycocotools (the rasteriser Detectron2 and COCO evaluation use) and that
mask is filled with the instance colour. Polygons are amodal: a later object may hide a small part of an
earlier one (each placement keeps every earlier object at least 85 % visible and overlaps the union of the
earlier objects by at most 12 % of its own area). ``area`` is the polygon's (shoelace) area; ``bbox`` is
the XYWH extent of the clipped polygon.

Long tail and frequency groups. Each class has a target fraction of training images (see
``_CLASS_SPECS``); images are assigned to classes rarest-first, so per-class *image* counts are exactly
the targets unless an object cannot be placed (practically never). The LVIS groups use LVIS's own rule
(r: 1-10 training images, c: 11-100, f: > 100), applied verbatim at the default size of 240 training
images and scaled linearly with the training-set size otherwise (see :func:`frequency_thresholds`). The
``frequency``, ``image_count`` and ``instance_count`` of a category are computed from the generated
training split and written identically into ``lvis_train.json`` and ``lvis_val.json`` (as LVIS does:
validation categories carry the training statistics).

LVIS image-level labels. The data is exhaustively annotated, so every image lists every class absent from
it in ``neg_category_ids`` and ``not_exhaustive_category_ids`` is empty: LVIS evaluation then counts every
false positive, like COCO evaluation.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_DATASET_NAMES",
    "shapes_root",
    "frequency_thresholds",
    "frequency_group",
    "generate_shapes",
    "register_shapes",
    "shapes_class_frequencies",
]

logger = logging.getLogger(__name__)

# Bump whenever the rendered bytes or the JSON contents change: a manifest with another version forces
# regeneration.
_FORMAT_VERSION = 1

# name, RGB colour, target fraction of training images containing the class, size factor (so that every
# class covers a similar area at a given radius), LVIS-like definition.
_CLASS_SPECS: Tuple[Tuple[str, Tuple[int, int, int], float, float, str], ...] = (
    ("circle", (220, 40, 40), 0.62, 1.00, "a round red disc"),
    ("square", (40, 80, 220), 0.55, 1.20, "a blue square, any rotation"),
    ("triangle", (30, 160, 60), 0.48, 1.50, "a green equilateral triangle"),
    ("hexagon", (240, 140, 20), 0.30, 1.08, "an orange regular hexagon"),
    ("ellipse", (140, 50, 190), 0.16, 1.30, "a purple elongated ellipse"),
    ("cross", (20, 170, 180), 0.08, 1.20, "a teal plus-shaped cross"),
    ("star", (230, 200, 20), 0.025, 1.50, "a yellow five-pointed star"),
    ("crescent", (90, 60, 30), 0.0125, 1.50, "a brown crescent moon"),
)

SHAPES_CLASSES: Tuple[str, ...] = tuple(s[0] for s in _CLASS_SPECS)
"""Class names; category id of ``SHAPES_CLASSES[i]`` is ``i + 1`` in both JSON formats."""

SHAPES_DATASET_NAMES: Tuple[str, ...] = (
    "rs_shapes_train",
    "rs_shapes_val",
    "rs_shapes_lvis_train",
    "rs_shapes_lvis_val",
)
"""Names registered by :func:`register_shapes` (COCO train/val, LVIS train/val)."""

_SPLITS = ("train", "val")
_MAX_OBJECTS = 4  # per image, also the max number of distinct classes per image
_MIN_VAL_IMAGES_PER_CLASS = 3  # so that APr/APc are measurable on the small val split
_FREQ_REFERENCE_NUM_TRAIN = 240  # LVIS thresholds apply verbatim at this training-set size
_URL_PREFIX = "http://rs-shapes.invalid"

_DEFAULTS = dict(num_train=240, num_val=40, image_size=(160, 160), seed=0)


# --------------------------------------------------------------------------------------------------------
# Paths and frequency rule
# --------------------------------------------------------------------------------------------------------


def shapes_root() -> str:
    """Default dataset folder: ``$DETECTRON2_DATASETS/rs_shapes``.

    ``DETECTRON2_DATASETS`` defaults to ``"datasets"`` (relative to the working directory), as in
    Detectron2's builtin datasets. Returns the path as a string (not made absolute).
    """
    return os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "rs_shapes")


def frequency_thresholds(num_train: int) -> Tuple[int, int]:
    """LVIS frequency thresholds ``(t_r, t_c)`` scaled to a training split of ``num_train`` images.

    LVIS: rare = 1-10 training images, common = 11-100, frequent = > 100. Here
    ``t_r = max(1, round_half_up(10 * num_train / 240))`` and ``t_c = 10 * t_r``, i.e. exactly 10 / 100
    for the default 240 training images, proportionally smaller or larger otherwise.
    """
    t_r = max(1, int(math.floor(10.0 * num_train / _FREQ_REFERENCE_NUM_TRAIN + 0.5)))
    return t_r, 10 * t_r


def frequency_group(image_count: int, num_train: int) -> str:
    """LVIS frequency group of a class that appears in ``image_count`` of ``num_train`` training images.

    Returns ``"r"`` if ``image_count <= t_r`` (a class with 0 images is also ``"r"``), ``"c"`` if
    ``t_r < image_count <= t_c``, else ``"f"``, with ``(t_r, t_c) = frequency_thresholds(num_train)``.
    """
    t_r, t_c = frequency_thresholds(num_train)
    if image_count <= t_r:
        return "r"
    if image_count <= t_c:
        return "c"
    return "f"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _paths(root: str) -> Dict[str, str]:
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


# --------------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------------


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _unit_outline(name: str) -> np.ndarray:
    """Outline of a class shape (P, 2) around the origin, circumradius about 1, before scale/rotation."""
    if name == "circle":
        return _regular(32)
    if name == "square":
        return _regular(4, np.pi / 4)
    if name == "triangle":
        return _regular(3, -np.pi / 2)
    if name == "hexagon":
        return _regular(6)
    if name == "ellipse":
        return _regular(32) * np.array([1.0, 0.55])
    if name == "cross":
        w = 0.32
        pts = [(w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1),
               (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1), (w, 1)]
        return np.array(pts, dtype=np.float64)
    if name == "star":
        outer = _regular(5, -np.pi / 2)
        inner = 0.45 * _regular(5, -np.pi / 2 + np.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(10, 2)
    if name == "crescent":
        # Unit disc minus a unit disc centred at (d, 0): outer arc on the left, inner arc back.
        d = 0.7
        y0 = math.sqrt(1.0 - d * d / 4.0)
        t0 = math.atan2(y0, d / 2.0)  # angle of the upper intersection on the outer circle
        outer_t = np.linspace(t0, 2.0 * np.pi - t0, 20)
        outer = np.stack([np.cos(outer_t), np.sin(outer_t)], axis=1)
        a0 = math.atan2(y0, -d / 2.0)  # same point seen from the inner circle's centre
        inner_t = np.linspace(2.0 * np.pi - a0, a0, 14)[1:-1]
        inner = np.stack([d + np.cos(inner_t), np.sin(inner_t)], axis=1)
        return np.concatenate([outer, inner], axis=0) - np.array([0.3, 0.0])
    raise KeyError(name)


_UNIT_OUTLINES = {name: _unit_outline(name) for name in SHAPES_CLASSES}


def _clip_to_rect(poly: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon (P, 2) to [0, width] x [0, height]; returns (Q, 2)."""

    def clip(pts, inside, intersect):
        out = []
        n = len(pts)
        for i in range(n):
            cur, prev = pts[i], pts[i - 1]
            cin, pin = inside(cur), inside(prev)
            if cin:
                if not pin:
                    out.append(intersect(prev, cur))
                out.append(cur)
            elif pin:
                out.append(intersect(prev, cur))
        return out

    def x_cut(xc):
        def f(p, q):
            t = (xc - p[0]) / (q[0] - p[0])
            return (xc, p[1] + t * (q[1] - p[1]))
        return f

    def y_cut(yc):
        def f(p, q):
            t = (yc - p[1]) / (q[1] - p[1])
            return (p[0] + t * (q[0] - p[0]), yc)
        return f

    pts = [tuple(p) for p in poly.tolist()]
    for inside, inter in (
        (lambda p: p[0] >= 0.0, x_cut(0.0)),
        (lambda p: p[0] <= width, x_cut(width)),
        (lambda p: p[1] >= 0.0, y_cut(0.0)),
        (lambda p: p[1] <= height, y_cut(height)),
    ):
        if not pts:
            break
        pts = clip(pts, inside, inter)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def _dedupe(poly: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicate vertices (including last == first)."""
    if len(poly) == 0:
        return poly
    keep = np.any(poly != np.roll(poly, 1, axis=0), axis=1)
    if not keep.any():
        return poly[:1]
    return poly[keep]


def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def _rasterize(flat: List[float], height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of one COCO polygon ``[x0, y0, x1, y1, ...]`` rasterised by pycocotools."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([flat], height, width)
    return mask_utils.decode(rles)[:, :, 0].astype(bool)


# --------------------------------------------------------------------------------------------------------
# Planning and rendering
# --------------------------------------------------------------------------------------------------------


def _class_targets(num_images: int, split: str) -> List[int]:
    """Target number of images per class for a split (before capacity limits)."""
    targets = []
    for _, _, frac, _, _ in _CLASS_SPECS:
        n = max(1, _round_half_up(frac * num_images))
        if split == "val":
            n = max(n, _MIN_VAL_IMAGES_PER_CLASS)
        targets.append(min(n, num_images))
    return targets


def _plan_split(rng: np.random.Generator, num_images: int, split: str) -> List[List[int]]:
    """For each image, the list of class indices to draw (first one instance per present class, then
    extra instances of present classes), at most ``_MAX_OBJECTS`` objects."""
    targets = _class_targets(num_images, split)
    present: List[List[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images, dtype=np.int64)
    # Rarest first, each class on the least-loaded images (random tie-break), so rare classes always
    # find room and frequent classes fill the images left empty.
    for k in sorted(range(len(_CLASS_SPECS)), key=lambda k: (targets[k], k)):
        order = rng.permutation(num_images)
        order = order[np.argsort(load[order], kind="stable")]
        chosen = [int(i) for i in order if load[i] < _MAX_OBJECTS][: targets[k]]
        for i in chosen:
            present[i].append(k)
            load[i] += 1
    plans = []
    for i in range(num_images):
        classes = sorted(present[i])
        if not classes:
            classes = [0]
        classes = [classes[j] for j in rng.permutation(len(classes))]
        total = int(rng.integers(len(classes), _MAX_OBJECTS + 1))
        extra = [classes[int(j)] for j in rng.integers(0, len(classes), size=total - len(classes))]
        plans.append(classes + extra)
    return plans


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Light, smoothly shaded background (H, W, 3) float64 in [0, 255]."""
    base = rng.uniform(200.0, 240.0, size=3)
    ys = np.arange(height, dtype=np.float64) / max(height - 1, 1)
    xs = np.arange(width, dtype=np.float64) / max(width - 1, 1)
    gx, gy = rng.uniform(-12.0, 12.0, size=2)
    fx, fy = rng.uniform(1.0, 3.0, size=2)
    ph = rng.uniform(0.0, 2.0 * np.pi, size=2)
    shade = (gy * (ys - 0.5))[:, None] + (gx * (xs - 0.5))[None, :]
    shade = shade + 4.0 * np.sin(2 * np.pi * fy * ys + ph[1])[:, None] * np.sin(2 * np.pi * fx * xs + ph[0])[None, :]
    return np.clip(base[None, None, :] + shade[:, :, None], 0.0, 255.0)


def _render_image(rng: np.random.Generator, plan: Sequence[int], height: int, width: int):
    """Render one image. Returns (uint8 (H, W, 3) image, list of (class index, flat polygon, area))."""
    img = _background(rng, height, width)
    top = np.full((height, width), -1, dtype=np.int64)  # index of the top-most object per pixel
    full_area: List[int] = []
    objects = []
    n_required = len(set(plan))
    min_side = float(min(height, width))
    min_pixels = max(64.0, 0.008 * height * width)
    for obj_idx, k in enumerate(plan):
        name, colour, _, size_factor, _ = _CLASS_SPECS[k]
        required = obj_idx < n_required  # first instance of a class planned for this image
        placed = None
        attempts = 80 if required else 25
        for attempt in range(attempts):
            shrink = 0.93 ** (attempt // 8)
            radius = rng.uniform(0.10, 0.22) * min_side * size_factor * shrink
            theta = rng.uniform(0.0, 2.0 * np.pi)
            c, s = math.cos(theta), math.sin(theta)
            pts = _UNIT_OUTLINES[name] * radius
            pts = pts @ np.array([[c, s], [-s, c]])
            half = np.abs(pts).max(axis=0)  # (hx, hy)
            # at most 20 % of the half-extent may leave the image
            cx = rng.uniform(0.8 * half[0], width - 0.8 * half[0]) if width > 1.6 * half[0] else width / 2
            cy = rng.uniform(0.8 * half[1], height - 0.8 * half[1]) if height > 1.6 * half[1] else height / 2
            full = _shoelace(pts)
            poly = _dedupe(np.round(_clip_to_rect(pts + np.array([cx, cy]), width, height), 2))
            if len(poly) < 3:
                continue
            area = _shoelace(poly)
            if area < 0.75 * full or area < min_pixels:
                continue
            flat = [float(v) for v in poly.reshape(-1)]
            mask = _rasterize(flat, height, width)
            n = int(mask.sum())
            if n < min_pixels:
                continue
            covered = top[mask]
            if np.count_nonzero(covered >= 0) > 0.12 * n:
                continue
            if objects:
                hidden = np.bincount(covered[covered >= 0], minlength=len(objects))
                visible = np.bincount(top[top >= 0], minlength=len(objects))
                if np.any(visible - hidden < 0.85 * np.asarray(full_area)):
                    continue
            placed = (flat, area, mask, n)
            break
        if placed is None:
            continue  # would be tiny or too occluded: skip this object
        flat, area, mask, n = placed
        jitter = rng.integers(-15, 16, size=3)
        img[mask] = np.clip(np.asarray(colour) + jitter, 0, 255)
        top[mask] = len(objects)
        full_area.append(n)
        objects.append((k, flat, area))
    return np.round(img).astype(np.uint8), objects


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def _atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = "{}.tmp{}".format(path, os.getpid())
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


def _normalize_params(num_train, num_val, image_size, seed) -> dict:
    h, w = (int(v) for v in image_size)
    if num_train < 1 or num_val < 1:
        raise ValueError("num_train and num_val must be >= 1, got {} and {}".format(num_train, num_val))
    if h < 64 or w < 64:
        raise ValueError("image_size must be at least 64 x 64, got {}".format(image_size))
    return {"num_train": int(num_train), "num_val": int(num_val), "image_size": [h, w], "seed": int(seed)}


def _file_name(image_id: int) -> str:
    return "{:06d}.png".format(image_id)


def _is_complete(paths: Dict[str, str], manifest: dict) -> bool:
    try:
        counts = {split: int(manifest["params"]["num_" + split]) for split in _SPLITS}
    except (KeyError, TypeError, ValueError):
        return False
    for key in ("coco_train", "coco_val", "lvis_train", "lvis_val"):
        if not os.path.isfile(paths[key]):
            return False
    for split in _SPLITS:
        folder = paths[split + "_images"]
        for i in range(1, counts[split] + 1):
            if not os.path.isfile(os.path.join(folder, _file_name(i))):
                return False
    return True


def _read_manifest(path: str) -> Optional[dict]:
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_shapes(
    root: Optional[str] = None,
    num_train: int = _DEFAULTS["num_train"],
    num_val: int = _DEFAULTS["num_val"],
    image_size: Tuple[int, int] = _DEFAULTS["image_size"],
    seed: int = _DEFAULTS["seed"],
    overwrite: bool = False,
) -> Dict[str, str]:
    """Generate (or reuse) the shapes dataset under ``root``.

    Args:
        root: output folder; ``None`` means :func:`shapes_root`.
        num_train, num_val: number of images in the train / val split (>= 1).
        image_size: ``(H, W)`` of every image in pixels (each >= 64).
        seed: the output (JSON and PNG bytes) is a deterministic function of
            ``(num_train, num_val, image_size, seed)``.
        overwrite: regenerate even if an up-to-date dataset is present.

    Idempotent: if ``root/manifest.json`` records the same parameters and format version and every file is
    present, nothing is written. Otherwise everything is regenerated (PNGs of an older, larger run that are
    not part of the new one are removed). Every file is written to a temporary name and moved into place
    with ``os.replace``; the manifest is written last, so an interrupted run is redone next time.

    Returns:
        dict of str -> str: ``"root"``, ``"manifest"``, ``"train_images"`` and ``"val_images"`` (image
        folders), ``"coco_train"``, ``"coco_val"``, ``"lvis_train"``, ``"lvis_val"`` (JSON paths), and
        ``"status"``: ``"generated"`` or ``"up-to-date"`` (nothing written).
    """
    root = shapes_root() if root is None else os.fspath(root)
    params = _normalize_params(num_train, num_val, image_size, seed)
    paths = _paths(root)
    manifest = {"version": _FORMAT_VERSION, "params": params}

    old = _read_manifest(paths["manifest"])
    if not overwrite and old is not None and old.get("version") == _FORMAT_VERSION \
            and old.get("params") == params and _is_complete(paths, old):
        return dict(paths, status="up-to-date")

    if os.path.exists(paths["manifest"]):
        os.remove(paths["manifest"])  # the dataset is not valid until the new manifest exists
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    h, w = params["image_size"]

    coco: Dict[str, dict] = {}
    lvis_images: Dict[str, list] = {}
    for split_idx, split in enumerate(_SPLITS):
        n_images = params["num_" + split]
        folder = paths[split + "_images"]
        os.makedirs(folder, exist_ok=True)
        plans = _plan_split(np.random.default_rng([params["seed"], split_idx, 0]), n_images, split)
        images, annotations, limages = [], [], []
        wanted = set()
        for i, plan in enumerate(plans):
            image_id = i + 1
            rng = np.random.default_rng([params["seed"], split_idx, 1, image_id])
            img, objects = _render_image(rng, plan, h, w)
            fname = _file_name(image_id)
            wanted.add(fname)
            _atomic_write_bytes(os.path.join(folder, fname), _png_bytes(img))
            images.append({"id": image_id, "file_name": fname, "height": h, "width": w, "license": 1})
            cats_here = set()
            for k, flat, area in objects:
                xs, ys = flat[0::2], flat[1::2]
                x0, y0 = min(xs), min(ys)
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": k + 1,
                    "segmentation": [flat],
                    "area": round(area, 2),
                    "bbox": [x0, y0, round(max(xs) - x0, 2), round(max(ys) - y0, 2)],
                    "iscrowd": 0,
                })
                cats_here.add(k + 1)
            limages.append({
                "id": image_id,
                "height": h,
                "width": w,
                "license": 1,
                "coco_url": "{}/{}/{}".format(_URL_PREFIX, split, fname),
                "neg_category_ids": [c for c in range(1, len(SHAPES_CLASSES) + 1) if c not in cats_here],
                "not_exhaustive_category_ids": [],
            })
        # remove PNGs from an earlier run with more images
        for fname in sorted(os.listdir(folder)):
            if fname.endswith(".png") and len(fname) == 10 and fname[:6].isdigit() and fname not in wanted:
                os.remove(os.path.join(folder, fname))
        coco[split] = {"images": images, "annotations": annotations}
        lvis_images[split] = limages

    # per-class statistics of the training split define the LVIS categories of both splits
    img_count = [0] * len(SHAPES_CLASSES)
    inst_count = [0] * len(SHAPES_CLASSES)
    seen = set()
    for a in coco["train"]["annotations"]:
        inst_count[a["category_id"] - 1] += 1
        if (a["image_id"], a["category_id"]) not in seen:
            seen.add((a["image_id"], a["category_id"]))
            img_count[a["category_id"] - 1] += 1
    lvis_categories = [
        {
            "id": k + 1,
            "name": name,
            "synset": "{}.n.01".format(name),
            "synonyms": [name],
            "def": _CLASS_SPECS[k][4],
            "frequency": frequency_group(img_count[k], params["num_train"]),
            "image_count": img_count[k],
            "instance_count": inst_count[k],
        }
        for k, name in enumerate(SHAPES_CLASSES)
    ]
    coco_categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPES_CLASSES)]
    licenses = [{"id": 1, "name": "generated by rs_detectron2 (no rights reserved)", "url": ""}]
    for split in _SPLITS:
        info = {
            "description": "rs_shapes {} split (synthetic, rs_detectron2.data.shapes)".format(split),
            "version": str(_FORMAT_VERSION),
            "year": 2024,
            "params": params,
        }
        _atomic_write_json(paths["coco_" + split], {
            "info": info, "licenses": licenses, "images": coco[split]["images"],
            "annotations": coco[split]["annotations"], "categories": coco_categories,
        })
        _atomic_write_json(paths["lvis_" + split], {
            "info": info, "licenses": licenses, "images": lvis_images[split],
            "annotations": coco[split]["annotations"], "categories": lvis_categories,
        })
    manifest["train_class_image_count"] = dict(zip(SHAPES_CLASSES, img_count))
    manifest["train_class_frequency"] = {c["name"]: c["frequency"] for c in lvis_categories}
    _atomic_write_json(paths["manifest"], manifest)
    logger.info("Generated the rs_shapes dataset (%s) under %s", params, root)
    return dict(paths, status="generated")


# --------------------------------------------------------------------------------------------------------
# Detectron2 registration
# --------------------------------------------------------------------------------------------------------


def _resolve_params(root: str, generate_kwargs: dict) -> dict:
    """Parameters to (re)generate with: explicit kwargs win; else those of a complete existing dataset
    (so ``register_shapes()`` never clobbers data made with other sizes); else the defaults."""
    if generate_kwargs:
        unknown = set(generate_kwargs) - set(_DEFAULTS)
        if unknown:
            raise TypeError("unexpected generate_shapes arguments: {}".format(sorted(unknown)))
        return dict(_DEFAULTS, **generate_kwargs)
    old = _read_manifest(_paths(root)["manifest"])
    if old is not None and old.get("version") == _FORMAT_VERSION and _is_complete(_paths(root), old):
        p = old["params"]
        return {"num_train": p["num_train"], "num_val": p["num_val"],
                "image_size": tuple(p["image_size"]), "seed": p["seed"]}
    return dict(_DEFAULTS)


def _load_coco_split(root: str, params: dict, split: str, dataset_name: str):
    from detectron2.data.datasets import load_coco_json

    paths = generate_shapes(root, **params)
    return load_coco_json(paths["coco_" + split], paths[split + "_images"], dataset_name)


def _load_lvis_split(root: str, params: dict, split: str):
    from detectron2.data.datasets.lvis import load_lvis_json

    paths = generate_shapes(root, **params)
    # no dataset_name: Detectron2 would look up builtin LVIS metadata by name and fail or, for a name
    # containing "v1", use the 1203 LVIS classes. The image root must end with a separator because
    # load_lvis_json concatenates it with the split folder taken from coco_url.
    return load_lvis_json(paths["lvis_" + split], os.path.join(root, ""))


def register_shapes(root: Optional[str] = None, **generate_kwargs) -> List[str]:
    """Register the shapes dataset in Detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

    Registers ``rs_shapes_train`` / ``rs_shapes_val`` (COCO json, ``evaluator_type="coco"``) and
    ``rs_shapes_lvis_train`` / ``rs_shapes_lvis_val`` (LVIS json loaded with ``load_lvis_json``,
    ``evaluator_type="lvis"``). All four share category ids 1..8 -> contiguous ids 0..7 in
    ``SHAPES_CLASSES`` order.

    The data is generated right here (about a second at default sizes) and again checked by each loader
    (a no-op when up to date): evaluators read ``metadata.json_file`` directly, and the LVIS metadata
    ``class_image_count`` (used by Detectron2's federated loss) comes from the generated training split.

    Args:
        root: dataset folder; ``None`` means :func:`shapes_root`. Stored as an absolute path.
        **generate_kwargs: ``num_train``, ``num_val``, ``image_size``, ``seed`` for
            :func:`generate_shapes`. Without them, an existing complete dataset under ``root`` is used
            as-is (whatever its sizes), otherwise the defaults are generated.

    Calling it again with the same root does nothing. Calling it with another root (or other
    parameters) replaces the four registrations, with a warning.

    Returns:
        list[str]: the four dataset names (:data:`SHAPES_DATASET_NAMES`).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = os.path.abspath(shapes_root() if root is None else os.fspath(root))
    params = _resolve_params(root, generate_kwargs)
    paths = generate_shapes(root, **params)

    key = (root, json.dumps(_normalize_params(**params), sort_keys=True))
    registered = [n for n in SHAPES_DATASET_NAMES if n in DatasetCatalog.list()]
    if registered:
        if all(MetadataCatalog.get(n).get("rs_shapes_key") == key for n in registered) and len(
            registered
        ) == len(SHAPES_DATASET_NAMES):
            return list(SHAPES_DATASET_NAMES)
        logger.warning("Re-registering %s for %s (was %s)", SHAPES_DATASET_NAMES, key,
                       MetadataCatalog.get(registered[0]).get("rs_shapes_key"))
        for n in registered:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)

    with open(paths["lvis_train"], "r") as f:
        lvis_cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    thing_classes = list(SHAPES_CLASSES)
    thing_colors = [spec[1] for spec in _CLASS_SPECS]
    class_image_count = [{"id": c["id"], "image_count": c["image_count"]} for c in lvis_cats]
    class_frequency = [c["frequency"] for c in lvis_cats]

    for split in _SPLITS:
        name = "rs_shapes_{}".format(split)
        DatasetCatalog.register(name, functools.partial(_load_coco_split, root, params, split, name))
        MetadataCatalog.get(name).set(
            thing_classes=thing_classes,
            thing_colors=thing_colors,
            thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(thing_classes))},
            json_file=paths["coco_" + split],
            image_root=paths[split + "_images"],
            evaluator_type="coco",
            rs_shapes_key=key,
        )
        name = "rs_shapes_lvis_{}".format(split)
        DatasetCatalog.register(name, functools.partial(_load_lvis_split, root, params, split))
        MetadataCatalog.get(name).set(
            thing_classes=thing_classes,
            thing_colors=thing_colors,
            class_image_count=class_image_count,
            class_frequency=class_frequency,
            json_file=paths["lvis_" + split],
            image_root=os.path.join(root, ""),
            evaluator_type="lvis",
            rs_shapes_key=key,
        )
    return list(SHAPES_DATASET_NAMES)


def shapes_class_frequencies(root: Optional[str] = None) -> Dict[str, str]:
    """LVIS frequency group of each class, read from ``root/annotations/lvis_train.json``.

    Args:
        root: dataset folder; ``None`` means :func:`shapes_root`. If no complete dataset is there, the
            default one is generated first.

    Returns:
        dict: class name -> ``"f"``, ``"c"`` or ``"r"`` (see :func:`frequency_group`), in
        ``SHAPES_CLASSES`` order.
    """
    root = shapes_root() if root is None else os.fspath(root)
    paths = generate_shapes(root, **_resolve_params(root, {}))
    with open(paths["lvis_train"], "r") as f:
        cats = json.load(f)["categories"]
    by_id = {c["id"]: c for c in cats}
    return {name: by_id[k + 1]["frequency"] for k, name in enumerate(SHAPES_CLASSES)}
