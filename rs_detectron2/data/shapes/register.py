"""Registering the shapes dataset in Detectron2's catalogs, without touching the disk.

:func:`register_shapes` only records names, paths and parameters. The data is generated (once,
atomically, see :func:`~rs_detectron2.data.shapes.generate_shapes`) the first time it is needed:
when a shapes dataset is loaded through ``DatasetCatalog``, or when metadata that is read from the
files is asked for (``json_file``, which the evaluators open, and the LVIS ``class_image_count`` /
``class_frequency``, which come from the generated training split). A run on COCO, LVIS or the
user's own data therefore never writes ``$DETECTRON2_DATASETS/rs_shapes``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Callable, Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from .spec import (
    SHAPE_CLASS_SPECS,
    SHAPES_CLASSES,
    SHAPES_DATASET_NAMES,
    SHAPES_DEFAULTS,
    SPLITS,
    ShapesParams,
    shapes_root,
)
from .write import (
    generate_shapes,
    normalize_params,
    params_of,
    read_manifest,
    shapes_paths,
    up_to_date,
)

__all__ = ["ShapesMetadata", "register_shapes", "shapes_class_frequencies"]

logger = logging.getLogger(__name__)

_FILE_KEYS = ("json_file", "class_image_count", "class_frequency")


class ShapesMetadata(Metadata):
    """Detectron2 ``Metadata`` whose file-backed keys (``json_file`` and, for the LVIS splits,
    ``class_image_count`` and ``class_frequency``) generate the data on first access."""

    __slots__ = ("_files",)  # outside __dict__, so it never shows up as a metadata key

    def __getattr__(self, key):
        if key not in _FILE_KEYS:
            return super().__getattr__(key)
        try:  # object's lookup: a missing slot must not come back to this method
            files: Optional[Callable[[], dict]] = object.__getattribute__(self, "_files")
        except AttributeError:  # an unpickled copy: the slot is not restored
            files = None
        if files is not None:
            values = files()
            self.__dict__.update(values)  # plain update: Metadata.__setattr__ would read first
            object.__setattr__(self, "_files", None)
            if key in values:
                return values[key]
        return super().__getattr__(key)


def _resolve_params(root: str, generate_kwargs: dict) -> dict:
    """Parameters to generate with: explicit kwargs win; else those of a complete existing dataset
    (so that ``register_shapes()`` never clobbers data made with other sizes); else the
    defaults."""
    if generate_kwargs:
        return dict(params_of(SHAPES_DEFAULTS), **generate_kwargs)
    paths = shapes_paths(root)
    if up_to_date(paths):
        p = read_manifest(paths["manifest"])["params"]
        return params_of(
            ShapesParams(p["num_train"], p["num_val"], tuple(p["image_size"]), p["seed"])
        )
    return params_of(SHAPES_DEFAULTS)


class _ShapesSource:
    """Where and with which parameters the data is generated; resolves the parameters once, on
    first use, and generates through :func:`generate_shapes` (a no-op when up to date)."""

    def __init__(self, root: str, generate_kwargs: dict):
        self.root = root
        self.generate_kwargs = dict(generate_kwargs)
        self._params: Optional[dict] = None

    def paths(self) -> Dict[str, str]:
        if self._params is None:
            self._params = _resolve_params(self.root, self.generate_kwargs)
        return generate_shapes(self.root, **self._params)

    def load_coco(self, split: str, dataset_name: str) -> List[dict]:
        from detectron2.data.datasets import load_coco_json

        paths = self.paths()
        return load_coco_json(paths["coco_" + split], paths[split + "_images"], dataset_name)

    def load_lvis(self, split: str) -> List[dict]:
        from detectron2.data.datasets.lvis import load_lvis_json

        # no dataset_name: Detectron2 would look up builtin LVIS metadata by name and fail or, for
        # a name containing "v1", use the 1203 LVIS classes. The image root must end with a
        # separator because load_lvis_json concatenates it with the folder taken from coco_url.
        return load_lvis_json(self.paths()["lvis_" + split], os.path.join(self.root, ""))

    def coco_files(self, split: str) -> dict:
        return {"json_file": self.paths()["coco_" + split]}

    def lvis_files(self, split: str) -> dict:
        paths = self.paths()
        with open(paths["lvis_train"]) as f:
            cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        return {
            "json_file": paths["lvis_" + split],
            "class_image_count": [{"id": c["id"], "image_count": c["image_count"]} for c in cats],
            "class_frequency": [c["frequency"] for c in cats],
        }


def _register_one(name: str, loader, files, key, **meta) -> None:
    DatasetCatalog.register(name, loader)
    metadata = ShapesMetadata(name=name)
    object.__setattr__(metadata, "_files", files)
    MetadataCatalog[name] = metadata
    metadata.set(
        thing_classes=list(SHAPES_CLASSES),
        thing_colors=[spec.colour for spec in SHAPE_CLASS_SPECS],
        thing_dataset_id_to_contiguous_id={k + 1: k for k in range(len(SHAPES_CLASSES))},
        rs_shapes_key=key,
        **meta,
    )


def _already_registered(key) -> bool:
    """True when the four names are registered with ``key``; removes partial or other
    registrations (with a warning) otherwise."""
    registered = [n for n in SHAPES_DATASET_NAMES if n in DatasetCatalog.list()]
    if not registered:
        return False
    keys = [MetadataCatalog.get(n).get("rs_shapes_key") for n in registered]
    if len(registered) == len(SHAPES_DATASET_NAMES) and all(k == key for k in keys):
        return True
    logger.warning(f"Re-registering {SHAPES_DATASET_NAMES} for {key} (was {keys[0]})")
    for n in registered:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)
    return False


def register_shapes(root: Optional[str] = None, **generate_kwargs) -> List[str]:
    """Register the shapes dataset in Detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

    Registers ``rs_shapes_train`` / ``rs_shapes_val`` (COCO json, ``evaluator_type="coco"``) and
    ``rs_shapes_lvis_train`` / ``rs_shapes_lvis_val`` (LVIS json loaded with ``load_lvis_json``,
    ``evaluator_type="lvis"``). All four share category ids 1..8 -> contiguous ids 0..7 in
    ``SHAPES_CLASSES`` order. Nothing is generated or written here: see the module docstring.

    Args:
        root: dataset folder; ``None`` means :func:`shapes_root`. Stored as an absolute path.
        **generate_kwargs: ``num_train``, ``num_val``, ``image_size``, ``seed`` for
            :func:`generate_shapes`. Without them, a complete dataset found under ``root`` when
            the data is first needed is used as it is (whatever its sizes), else the defaults
            (:data:`SHAPES_DEFAULTS`) are generated.

    Calling it again with the same arguments does nothing. Calling it with another root (or other
    parameters) replaces the four registrations, with a warning.

    Returns:
        list[str]: the four dataset names (:data:`SHAPES_DATASET_NAMES`).

    Raises:
        TypeError: for an unknown keyword; ``ValueError`` for invalid sizes.
    """
    unknown = set(generate_kwargs) - set(params_of(SHAPES_DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected generate_shapes arguments: {sorted(unknown)}")
    if generate_kwargs:  # fail here, not when the data is first loaded
        normalize_params(**dict(params_of(SHAPES_DEFAULTS), **generate_kwargs))
    root = os.path.abspath(shapes_root() if root is None else os.fspath(root))
    key = (root, json.dumps(generate_kwargs, sort_keys=True, default=list))
    if _already_registered(key):
        return list(SHAPES_DATASET_NAMES)

    source = _ShapesSource(root, generate_kwargs)
    paths = shapes_paths(root)
    for split in SPLITS:
        name = f"rs_shapes_{split}"
        loader = functools.partial(source.load_coco, split, name)
        files = functools.partial(source.coco_files, split)
        _register_one(
            name, loader, files, key, image_root=paths[split + "_images"], evaluator_type="coco"
        )
        name = f"rs_shapes_lvis_{split}"
        loader = functools.partial(source.load_lvis, split)
        files = functools.partial(source.lvis_files, split)
        _register_one(
            name, loader, files, key, image_root=os.path.join(root, ""), evaluator_type="lvis"
        )
    return list(SHAPES_DATASET_NAMES)


def shapes_class_frequencies(root: Optional[str] = None) -> Dict[str, str]:
    """LVIS frequency group of each class, read from ``root/annotations/lvis_train.json``.

    Args:
        root: dataset folder; ``None`` means :func:`shapes_root`. If no complete dataset is there,
            the default one is generated first.

    Returns:
        dict: class name -> ``"f"``, ``"c"`` or ``"r"`` (see :func:`frequency_group`), in
        ``SHAPES_CLASSES`` order.
    """
    root = shapes_root() if root is None else os.fspath(root)
    paths = generate_shapes(root, **_resolve_params(root, {}))
    with open(paths["lvis_train"]) as f:
        cats = json.load(f)["categories"]
    by_id = {c["id"]: c for c in cats}
    return {name: by_id[k + 1]["frequency"] for k, name in enumerate(SHAPES_CLASSES)}
