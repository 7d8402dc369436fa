"""What a LazyConfig says about the data it needs: the key that sets its class count (and every
other key that must agree with it), whether its model trains on masks, and the box-only config to
use instead of a mask config.

These read the config only (nothing is instantiated, no dataset is loaded);
:mod:`.dataset_checks` holds them against a registered dataset.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, ListConfig

__all__ = [
    "box_only_config",
    "class_count_disagreement",
    "class_count_key",
    "class_count_keys",
    "model_trains_masks",
]

# Sub-trees whose num_classes is not the detector's class count (a panoptic model's stuff classes).
_OTHER_COUNTS = ("sem_seg_head",)


def class_count_key(cfg) -> Tuple[Optional[str], Any]:
    """The one key to change to set a config's number of classes, and its value.

    Args:
        cfg: a LazyConfig (with ``model``).
    Returns:
        ``("model.roi_heads.num_classes", n)`` for R-CNN models (their box and mask predictors
        follow it), ``("model.num_classes", n)`` for the others (dense detectors, SOLOv2,
        YOLACT: their head follows it), ``(None, None)`` for a model without one (an RPN alone).
        The value is as found (an int, or something else the caller must reject).
    """
    model = cfg.get("model", {})
    if "roi_heads" in model and "num_classes" in model.roi_heads:
        return "model.roi_heads.num_classes", model.roi_heads.num_classes
    if "num_classes" in model:
        return "model.num_classes", model.num_classes
    return None, None


def _walk(node, prefix: str, out: Dict[str, Any]) -> None:
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}.{key}"
            if key == "num_classes":
                out[path] = node[key]
            elif key not in _OTHER_COUNTS and isinstance(node[key], (DictConfig, ListConfig)):
                _walk(node[key], path, out)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            if isinstance(item, (DictConfig, ListConfig)):
                _walk(item, f"{prefix}.{i}", out)


def class_count_keys(cfg) -> Dict[str, Any]:
    """Every ``num_classes`` key under ``cfg.model`` (the model's own, its head's, each box or
    mask predictor's, each cascade stage's), as ``{dotted key: value}`` with interpolations such as
    ``${..num_classes}`` resolved. The shipped configs link them all to :func:`class_count_key`, so
    that one override changes them together."""
    out: Dict[str, Any] = {}
    if "model" in cfg:
        _walk(cfg.model, "model", out)
    return out


def class_count_disagreement(cfg) -> Optional[str]:
    """None when every class-count key of ``cfg`` holds the same value as :func:`class_count_key`
    (a mask head may also hold 1: class-agnostic masks); else a message naming each key with its
    value, and the one key to set instead."""
    key, value = class_count_key(cfg)
    if key is None:
        return None
    found = class_count_keys(cfg)
    odd = {k: v for k, v in found.items() if v != value and not (v == 1 and ".mask_head." in k)}
    if not odd:
        return None
    shown = ", ".join(f"{k}={v}" for k, v in {key: value, **odd}.items())
    return (
        f"the model's class counts disagree: {shown}. A model predicts one set of classes: set it "
        f"with {key}=N alone (the other keys follow it), and give the others back their link."
    )


def model_trains_masks(cfg) -> bool:
    """True when the config's model needs ground-truth masks to train: an R-CNN with a mask head,
    or a meta-architecture whose class says ``requires_gt_masks`` (SOLOv2, YOLACT)."""
    model = cfg.get("model", {})
    roi_heads = model.get("roi_heads") if isinstance(model, DictConfig) else None
    if isinstance(roi_heads, DictConfig) and roi_heads.get("mask_head") is not None:
        return bool(roi_heads.get("mask_in_features", True))
    target = model.get("_target_") if isinstance(model, DictConfig) else None
    if isinstance(target, str):
        from detectron2.utils.registry import locate

        try:
            target = locate(target)
        except Exception:  # an unknown target fails later, where it is built
            return False
    return bool(getattr(target, "requires_gt_masks", False))


# The box-only model of each mask model: R-CNNs keep their family; RS-SOLOv2 and RS-YOLACT go to
# RS-ATSS (the paper's box-only RS detector of the same one-stage kind), their stock versions to
# Faster R-CNN (the stock baseline shipped in every folder).
_BOX_ONLY = (
    ("mask_rcnn", "faster_rcnn"),
    ("solov2_light", None),
    ("solov2", None),
    ("yolact", None),
)


def _box_only_name(stem: str) -> Optional[Tuple[str, str]]:
    """``(wanted file stem, its model prefix)`` of the box-only twin of a config stem, or None."""
    for mask_name, box_name in _BOX_ONLY:
        at = stem.find(mask_name)
        if at < 0:
            continue
        if box_name is None:
            box_name = "atss" if stem[:at].endswith("rs_") else "faster_rcnn"
        wanted = stem[:at] + box_name + stem[at + len(mask_name) :]
        return wanted, stem[:at] + box_name
    return None


def _candidate_folders(folder: str) -> List[str]:
    folders = [folder]
    name = os.path.basename(folder)
    parent = os.path.dirname(folder)
    if "InstanceSegmentation" in name and os.path.isdir(parent):
        twin = os.path.join(parent, name.replace("InstanceSegmentation", "Detection"))
        siblings = sorted(
            os.path.join(parent, f) for f in os.listdir(parent) if f.endswith("-Detection")
        )
        folders += [twin] + siblings
    return [f for f in dict.fromkeys(folders) if os.path.isdir(f)]


def box_only_config(config_file: str) -> Optional[str]:
    """The shipped (or neighbouring) box-only config that trains what a mask config trains, on
    boxes alone: ``rs_mask_rcnn_X.py`` -> ``rs_faster_rcnn_X.py``, ``rs_solov2_X.py`` /
    ``rs_yolact_X.py`` -> ``rs_atss_X.py`` (stock SOLOv2 / YOLACT -> ``faster_rcnn_X.py``),
    searched beside the config and in the matching ``*-Detection`` folder, the nearest name when
    there is no exact twin.

    Returns:
        the path (relative to the working directory when below it), or None when the config's
        name says no model family or no such file exists.
    """
    folder, base = os.path.split(os.path.abspath(config_file))
    stem, ext = os.path.splitext(base)
    names = _box_only_name(stem)
    if names is None:
        return None
    wanted, model_prefix = names
    found = {}
    for f in _candidate_folders(folder):
        for entry in sorted(os.listdir(f)):
            entry_stem, entry_ext = os.path.splitext(entry)
            if entry_ext == ext and entry_stem.startswith(model_prefix):
                found.setdefault(entry_stem, os.path.join(f, entry))
    if not found:
        return None
    best = (
        wanted
        if wanted in found
        else max(found, key=lambda s: difflib.SequenceMatcher(None, wanted, s).ratio())
    )
    path = found[best]
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
