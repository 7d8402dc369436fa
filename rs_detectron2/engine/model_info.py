"""What a trained model needs to be used as it was trained, saved with its weights.

A training run writes a ``model_info`` entry into every checkpoint (:func:`model_info_from_config`):
the class names and the dataset's category id of each class, the number of classes and the config
key that sets it, the input format, the pixel mean / std and the test-time augmentations (the test
resize), and the config the run was started from. ``--eval-only``, ``predict``, ``export``,
:class:`~rs_detectron2.engine.LazyPredictor` and :class:`~rs_detectron2.deploy.ExportedModel`
read it back (:func:`read_model_info`) so that a model is used as it was trained without repeating
the training's overrides: :func:`adopt_model_info` writes it into the config before the model is
built, and stops (:class:`ModelInfoMismatch`) where what the command asks disagrees with it.

Checkpoints without the entry (Detectron2's model zoo, runs of earlier versions) are used as their
config describes them, as before.
"""

import inspect
import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyCall, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.utils.registry import locate

from ..data import class_count_key

__all__ = [
    "MODEL_INFO_KEY",
    "MODEL_INFO_VERSION",
    "ModelInfoMismatch",
    "adopt_model_info",
    "augmentations_from_info",
    "check_dataset_classes",
    "class_count",
    "describe_augmentations",
    "evaluation_config",
    "metadata_from_info",
    "model_info_from_config",
    "read_model_info",
]

logger = logging.getLogger(__name__)

MODEL_INFO_KEY = "model_info"  # the checkpoint's entry (beside "model", "optimizer", ...)
MODEL_INFO_VERSION = 1
# Modules whose augmentations a model_info may name: a description is data, never arbitrary code.
_AUGMENTATION_MODULES = ("detectron2.data.transforms", "rs_detectron2.data")


class ModelInfoMismatch(ValueError):
    """What a command asks disagrees with what the weights were trained for; the message names
    both sides and the fix."""


def class_count(cfg) -> Tuple[Optional[str], Optional[int]]:
    """The config key that sets the model's number of classes and its value
    (:func:`rs_detectron2.data.class_count_key`); the value is None when it is not an int, both
    are None for a model without one (e.g. an RPN alone)."""
    key, value = class_count_key(cfg)
    return key, value if isinstance(value, int) else None


def _plain(value):
    """A JSON-able copy: tuples become lists, tensors and arrays lists of numbers."""
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def describe_augmentations(augmentations: Sequence[T.Augmentation]) -> List[dict]:
    """JSON-able descriptions of Detectron2 augmentations (e.g. the test resize), from which
    :func:`augmentations_from_info` builds them again.

    Args:
        augmentations: instances of Detectron2's (or this package's) ``Augmentation`` classes.
    Returns:
        one dict per augmentation: ``type`` (its import path) and the arguments of its constructor
        that it keeps as attributes (Detectron2's augmentations keep all of them).
    """
    out = []
    for aug in augmentations:
        cls = type(aug)
        entry = {"type": f"{cls.__module__}.{cls.__qualname__}"}
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                if hasattr(aug, name):
                    entry[name] = _plain(getattr(aug, name))
        out.append(entry)
    return out


def augmentations_from_info(descriptions: Sequence[Mapping]) -> List[T.Augmentation]:
    """The augmentations of :func:`describe_augmentations` descriptions.

    Raises:
        ValueError: a type outside Detectron2's and this package's transforms.
    """
    augs = []
    for d in descriptions:
        d = dict(d)
        path = d.pop("type")
        if not path.startswith(_AUGMENTATION_MODULES):
            raise ValueError(f"model_info names augmentation {path}, not a Detectron2 transform")
        augs.append(locate(path)(**d))
    return augs


def _test_augmentations(cfg) -> Optional[List[T.Augmentation]]:
    mapper = cfg.get("dataloader", {}).get("test", {}).get("mapper", None)
    if mapper is None or mapper.get("augmentations", None) is None:
        return None
    return list(instantiate(mapper.augmentations))


def _first_train_dataset(cfg) -> Optional[str]:
    dataset = cfg.get("dataloader", {}).get("train", {}).get("dataset", {})
    if not isinstance(dataset, (DictConfig, dict)):  # already loaded (an epoch schedule's)
        return None
    names = dataset.get("names")
    if isinstance(names, str):
        return names
    return str(names[0]) if names else None


def model_info_from_config(cfg, model: torch.nn.Module, config_file: str = "") -> dict:
    """What the run of ``cfg`` trains, to save with its weights.

    Args:
        cfg: the LazyConfig of the run (overrides applied), whose training datasets are
            registered, and whose ``dataloader.train.dataset`` is still a config node (call this
            before anything replaces it with the loaded dataset, as an epoch schedule does).
        model: the model built from ``cfg.model`` (not wrapped in DistributedDataParallel).
        config_file: the config file the run started from (recorded for messages only).
    Returns:
        dict (JSON-able): ``version``, ``config_file``, ``meta_architecture``,
        ``num_classes_key``, ``num_classes``, ``dataset`` (the first training dataset),
        ``thing_classes`` (names in class-index order, or None), ``category_ids`` (the dataset's
        category id of each class index, or None when the dataset has no id map),
        ``input_format``, ``pixel_mean``, ``pixel_std`` (or None) and ``test_augmentations``
        (:func:`describe_augmentations`, or None when the config has no test mapper).
    """
    key, num = class_count(cfg)
    dataset = _first_train_dataset(cfg)
    meta = MetadataCatalog.get(dataset) if dataset else Metadata()
    names = meta.get("thing_classes", None)
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
    ids = None
    if id_map:
        inverse = {v: k for k, v in id_map.items()}
        ids = [int(inverse[i]) for i in range(len(inverse))]
    augs = _test_augmentations(cfg)
    input_format = getattr(model, "input_format", None) or cfg.model.get("input_format", "BGR")
    return {
        "version": MODEL_INFO_VERSION,
        "config_file": os.fspath(config_file),
        "meta_architecture": type(model).__name__,
        "num_classes_key": key,
        "num_classes": num,
        "dataset": dataset,
        "thing_classes": None if names is None else [str(n) for n in names],
        "category_ids": ids,
        "input_format": input_format,
        "pixel_mean": _plain(getattr(model, "pixel_mean", None)),
        "pixel_std": _plain(getattr(model, "pixel_std", None)),
        "test_augmentations": None if augs is None else describe_augmentations(augs),
    }


def read_model_info(weights: Optional[str]) -> Optional[dict]:
    """The ``model_info`` saved in a checkpoint, or None (no weights, a remote or non-PyTorch
    file such as Detectron2's ``.pkl`` model zoo weights, or a checkpoint without it).

    Raises:
        FileNotFoundError: a local ``weights`` path that does not exist.
    """
    if not weights or "://" in weights or not weights.endswith((".pth", ".pt")):
        return None
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights {weights} do not exist")
    try:
        # mmap: only the small entry is read from a file of several hundred MB
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, or pickled objects: the loader says more later
        return None
    info = checkpoint.get(MODEL_INFO_KEY) if isinstance(checkpoint, dict) else None
    return info if isinstance(info, dict) else None


def metadata_from_info(info: Mapping) -> Metadata:
    """A Detectron2 ``Metadata`` of the trained classes (``thing_classes`` and, when known,
    ``thing_dataset_id_to_contiguous_id``), for drawing and for COCO results."""
    meta = Metadata()
    if info.get("thing_classes") is not None:
        meta.thing_classes = list(info["thing_classes"])
    if info.get("category_ids") is not None:
        meta.thing_dataset_id_to_contiguous_id = {c: i for i, c in enumerate(info["category_ids"])}
    return meta


def _shown(names: Sequence[str]) -> str:
    return ", ".join(map(str, names[:6])) + (", ..." if len(names) > 6 else "")


def _trained(info: Mapping) -> str:
    """How the messages name the weights' training: classes and dataset."""
    names = info.get("thing_classes")
    what = f"{info.get('num_classes')} classes" + (f" ({_shown(names)})" if names else "")
    dataset = f" of dataset {info['dataset']}" if info.get("dataset") else ""
    config = f" with {info['config_file']}" if info.get("config_file") else ""
    return f"{what}{dataset}{config}"


def check_dataset_classes(info: Optional[Mapping], metadata, dataset: str, weights: str) -> None:
    """The classes of ``dataset`` (its ``metadata``) are those the weights were trained on.

    Raises:
        ModelInfoMismatch: another count or other names (in class-index order).
    """
    if not info or info.get("thing_classes") is None:
        return
    trained = list(info["thing_classes"])
    names = metadata.get("thing_classes", None)
    if names is None or list(names) == trained:
        return
    raise ModelInfoMismatch(
        f"the weights {weights} were trained on {_trained(info)}, but dataset {dataset} has "
        f"{len(names)} classes ({_shown(list(names))}). Evaluate or draw them on a dataset with "
        "the same classes in the same order."
    )


def _info_entries(cfg, info: Mapping) -> Dict[str, object]:
    """Config key -> value that ``info`` fixes, for the keys this config has."""
    entries: Dict[str, object] = {}
    key, _ = class_count(cfg)
    if key and info.get("num_classes") is not None:
        if key != info.get("num_classes_key"):
            config = info.get("config_file") or "the config they were trained with"
            raise ModelInfoMismatch(
                f"the weights were trained by a model whose class count is "
                f"{info.get('num_classes_key')}, the config's model sets {key}: they are models "
                f"of different kinds. Use the weights with {config}."
            )
        entries[key] = int(info["num_classes"])
    for name in ("input_format", "pixel_mean", "pixel_std"):
        if info.get(name) is not None and name in cfg.model:
            entries[f"model.{name}"] = info[name]
    mapper = cfg.get("dataloader", {}).get("test", {}).get("mapper", None)
    if mapper is not None and info.get("input_format") and "image_format" in mapper:
        entries["dataloader.test.mapper.image_format"] = info["input_format"]
    return entries


def _same(a, b) -> bool:
    return _plain(a) == _plain(b) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)
    )


def adopt_model_info(
    cfg, info: Optional[Mapping], overrides: Sequence[str] = (), weights: str = ""
) -> DictConfig:
    """The config with what the weights were trained for written into it, then the command's
    ``KEY=VALUE`` ``overrides`` applied.

    From ``info``: the class count (at the config's class-count key; the keys linked to it
    follow), ``model.input_format``, ``model.pixel_mean`` / ``pixel_std``, the test mapper's image
    format and its augmentations (the test resize). An override may change the test-time
    augmentations; it may not change what the weights were trained for.

    Args:
        cfg: a LazyConfig without the overrides (modified in place and returned).
        info: :func:`read_model_info`'s result; None applies the overrides only.
        overrides: the command's ``KEY=VALUE`` strings.
        weights: the checkpoint, named in messages.
    Returns:
        the config.
    Raises:
        ModelInfoMismatch: an override (or the config's model) that disagrees with the weights.
    """
    from detectron2.config import LazyConfig

    if not info:
        return LazyConfig.apply_overrides(cfg, list(overrides)) if overrides else cfg
    entries = _info_entries(cfg, info)
    changed = []
    for key, value in entries.items():
        old = OmegaConf.select(cfg, key)
        if not _same(old, value):
            changed.append(f"{key}={_plain(value)}")
        OmegaConf.update(cfg, key, value, merge=False)
    augs = info.get("test_augmentations")
    mapper = cfg.get("dataloader", {}).get("test", {}).get("mapper", None)
    if augs is not None and mapper is not None and "augmentations" in mapper:
        augmentations_from_info(augs)  # only Detectron2's transforms; raises otherwise
        mapper.augmentations = [
            LazyCall(locate(d["type"]))(**{k: v for k, v in d.items() if k != "type"}) for d in augs
        ]
    if overrides:
        cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    for key, value in entries.items():
        now = OmegaConf.select(cfg, key)
        if not _same(now, value):
            raise ModelInfoMismatch(
                f"{key}={_plain(now)} disagrees with the weights {weights or ''}, trained with "
                f"{key}={_plain(value)} on {_trained(info)}. Drop the override: the weights "
                "say how they were trained."
            )
    if changed:
        logger.info(f"From the weights' model_info: {', '.join(changed)}")
    return cfg


def _test_dataset_names(cfg) -> List[str]:
    names = cfg.get("dataloader", {}).get("test", {}).get("dataset", {}).get("names")
    if names is None:
        return []
    return [names] if isinstance(names, str) else [str(n) for n in names]


def evaluation_config(config_file: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``--eval-only`` evaluates with: the LazyConfig of ``config_file`` with what the
    weights ``train.init_checkpoint`` were trained for (:func:`adopt_model_info`) and the
    ``overrides``; its test datasets must have the classes the model predicts.

    Raises:
        ModelInfoMismatch: an override that contradicts the weights, or a test dataset with other
            classes than the weights' (or, for weights without model_info, another count than
            the model's).
    """
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), list(overrides))
    weights = cfg.get("train", {}).get("init_checkpoint", "")
    info = read_model_info(weights)
    if info:
        cfg = adopt_model_info(LazyConfig.load(config_file), info, overrides, weights)
    key, num = class_count(cfg)
    for name in _test_dataset_names(cfg):
        meta = MetadataCatalog.get(name)
        check_dataset_classes(info, meta, name, weights)
        names = meta.get("thing_classes", None)
        if num is not None and names is not None and len(names) != num:
            raise ModelInfoMismatch(
                f"the model predicts {num} classes ({key}={num}) but the test dataset {name} has "
                f"{len(names)} ({_shown(list(names))}). Evaluate on a dataset with the model's "
                "classes (dataloader.test.dataset.names=NAME)."
            )
    return cfg
