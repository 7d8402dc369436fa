"""Start-up checks of a training run: what can be known to fail is reported before a model is built.

Each check raises :class:`ConfigError` (the command line or the config cannot work),
:class:`DataError` (the data cannot be trained on) or :class:`StartError` (the run cannot start as
asked: the device, an earlier run in the output folder) with a message that says what to change:

* :func:`check_overrides`: ``KEY=VALUE`` overrides name keys that exist (or arguments the
  configured callable accepts), with the nearest valid key suggested, and values whose type fits;
  :func:`load_checked_config` loads a config and applies overrides checked so.
* :func:`check_device`: the config's device exists and can run what the config asks (AMP).
* :func:`check_output_dir`: a fresh run does not start over the checkpoints of an earlier one.
* :func:`check_datasets_registered` and :func:`check_class_count`: the training datasets exist and
  have as many classes as the model predicts (the message gives the override that fixes it).
* :func:`mask_format_override`: RLE masks need ``instance_mask_format="bitmask"``.
* :func:`check_data`: the dataset linter (:mod:`rs_detectron2.data.lint`) on the training sets.
* :func:`check_training_data`: the four above, in order, on a config's training datasets.
* :func:`check_eval_weights`: ``--eval-only`` has weights to evaluate.

:func:`ranking_pool_warning` is not an error: it says when the ranking losses rank a pool of another
size than the paper's (each process ranks its own images, 4 in the authors' 4 GPUs x 4 images).

docs/getting_started.md ("Start-up checks") and docs/datasets.md describe what is checked and
how to read the report.
"""

import ast
import dataclasses
import difflib
import inspect
import logging
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.registry import locate

from ..data import (
    MASK_FORMAT_KEY,
    ConfigFacts,
    check_dataset,
    class_count_disagreement,
    class_count_key,
    config_facts,
    format_findings,
    required_mask_format,
)
from ..losses import RankingLoss
from .checkpoint import existing_checkpoint

__all__ = [
    "ConfigError",
    "DataError",
    "StartError",
    "TrainingDataCheck",
    "check_class_count",
    "check_data",
    "check_datasets_registered",
    "check_device",
    "check_eval_weights",
    "check_output_dir",
    "check_overrides",
    "check_training_data",
    "load_checked_config",
    "mask_format_override",
    "parse_overrides",
    "ranking_pool_warning",
]

logger = logging.getLogger("rs_detectron2")

_ABSENT = object()


class ConfigError(ValueError):
    """An override or config value that cannot work; the message says how to fix it."""


class DataError(ValueError):
    """Training data that cannot be trained on; the message names the file and the fix."""


class StartError(RuntimeError):
    """A run that cannot start as asked (the device, or an earlier run in the output folder); the
    message says what to do instead."""


def parse_overrides(overrides: Sequence[str]) -> List[Tuple[str, Any]]:
    """``KEY=VALUE`` strings -> ``(key, value)`` pairs, values parsed as Detectron2's
    ``LazyConfig.apply_overrides`` parses them (Hydra's grammar: ``2`` int, ``2.0`` float,
    ``true`` bool, ``null`` None, ``[a,b]`` list, anything else a string).

    Raises:
        ConfigError: an override without ``=`` or that Hydra cannot parse.
    """
    for o in overrides:
        if "=" not in o:
            hint = " (an option? see --help for its spelling)" if o.startswith("-") else ""
            raise ConfigError(f"override {o!r} is not KEY=VALUE{hint}")
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError:  # Detectron2's fallback without Hydra
        pairs = []
        for o in overrides:
            key, value = o.split("=", 1)
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
            pairs.append((key, value))
        return pairs
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # Hydra's OverrideParseException, with the position in its message
        raise ConfigError(f"cannot parse the overrides: {e}") from e
    return [(o.key_or_group, o.value()) for o in parsed]


def _target(node) -> Any:
    """The callable of a LazyCall node (``_target_`` may be an import path), or None."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    target = node._target_
    try:
        return locate(target) if isinstance(target, str) else target
    except Exception:
        return None


def _parameters(target) -> Dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def _config_keys(node, prefix: str = "") -> List[str]:
    """Every dotted key below ``node`` (dicts only, not into lists), plus the arguments the
    callables of LazyCall nodes accept."""
    keys = []
    if not isinstance(node, DictConfig):
        return keys
    for k in node.keys():
        key = f"{prefix}{k}"
        keys.append(key)
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            keys += _config_keys(child, f"{key}.")
    for name, p in _parameters(_target(node)).items():
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in node:
            keys.append(f"{prefix}{name}")
    return keys


def _nearest(key: str, candidates: Sequence[str]) -> Optional[str]:
    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _type_name(value) -> str:
    """``value``'s type with its article: "an int", "a list", ..."""
    if isinstance(value, (ListConfig, list, tuple)):
        name = "list"
    elif isinstance(value, DictConfig):
        name = "config node"
    else:
        name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _none_allowed(parent, name: str) -> bool:
    p = _parameters(_target(parent)).get(name)
    if p is None:
        return False
    return p.default is None or "Optional" in str(p.annotation) or "None" in str(p.annotation)


def _fits(old, new) -> bool:
    """Whether ``new`` (a parsed override value) can replace ``old`` (the config's value)."""
    if old is None:
        return True
    if isinstance(old, bool):
        return isinstance(new, bool)
    if isinstance(old, int):
        return isinstance(new, int) and not isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, (int, float)) and not isinstance(new, bool)
    if isinstance(old, str):  # dataset names may become lists of names
        return isinstance(new, str) or (
            isinstance(new, (list, tuple)) and all(isinstance(v, str) for v in new)
        )
    if isinstance(old, ListConfig):
        if isinstance(new, (list, tuple)):
            return True
        return len(old) > 0 and all(_fits(v, new) for v in old)
    if isinstance(old, DictConfig):
        return isinstance(new, dict)
    if callable(old):  # a class or function may be replaced by its import path
        return isinstance(new, str) or callable(new)
    return True


def check_overrides(cfg, overrides: Sequence[str]) -> None:
    """Check ``KEY=VALUE`` overrides against ``cfg`` before they are applied.

    A key must exist in ``cfg``, or name an argument of the callable of a LazyCall node (for
    example ``dataloader.train.mapper.instance_mask_format``, which DatasetMapper accepts). The
    value's type must fit the existing value: an int where an int is, an int or float where a float
    is, ``true``/``false`` for a bool, a list where a list is, ``null`` where the value is None or
    the callable's argument defaults to None.

    Args:
        cfg: the loaded LazyConfig, before the overrides are applied.
        overrides: the ``KEY=VALUE`` strings of the command line.

    Raises:
        ConfigError: naming the key (with the nearest valid key) or the key, value and the
            expected type.
    """
    candidates = None
    for key, value in parse_overrides(overrides):
        old = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if old is _ABSENT:
            params = _parameters(_target(parent))
            if name in params and params[name].kind not in (
                inspect.Parameter.VAR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            ):
                continue  # an argument the config leaves at its default
            if candidates is None:
                candidates = _config_keys(cfg)
            nearest = _nearest(key, candidates)
            takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
            if takes_kwargs and (nearest is None or nearest.rpartition(".")[0] != parent_key):
                continue  # passed on through **kwargs, and not a near miss of a sibling key
            hint = f"; did you mean {nearest}?" if nearest else ""
            count_key = class_count_key(cfg)[0] if name == "num_classes" else None
            if count_key:
                hint = f"; this model's class count is {count_key} (the other keys follow it)"
            raise ConfigError(f"unknown config key {key!r} in override {key}={value}{hint}")
        if value is None:
            # a LazyCall node may be dropped (None: the component is off, e.g. an epoch schedule)
            if old is None or _none_allowed(parent, name) or _target(old) is not None:
                continue
            raise ConfigError(
                f"override {key}=null: {key} expects {_type_name(old)} (now {old!r}), not None"
            )
        if not _fits(old, value):
            shown = old if not isinstance(old, (DictConfig, ListConfig)) else "..."
            raise ConfigError(
                f"override {key}={value}: {key} expects {_type_name(old)} (now {shown!r}), "
                f"got {_type_name(value)}: {value!r}"
            )


def load_checked_config(config_file: str, overrides: Sequence[str], check: bool = True):
    """The LazyConfig of ``config_file`` with the ``KEY=VALUE`` ``overrides`` applied; with
    ``check``, the overrides are first checked by :func:`check_overrides`, and the result's
    class-count keys must agree (:func:`rs_detectron2.data.class_count_disagreement`).

    Raises:
        ConfigError: see :func:`check_overrides`, or the class-count keys that disagree.
    """
    cfg = LazyConfig.load(config_file)
    if check:
        check_overrides(cfg, overrides)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    problem = class_count_disagreement(cfg) if check else None
    if problem:
        raise ConfigError(problem)
    return cfg


def check_device(cfg) -> None:
    """The config's ``train.device`` can run it: a CUDA device is visible when it is CUDA, and
    ``train.amp.enabled`` (Detectron2's AMPTrainer) is only set on CUDA.

    Raises:
        StartError: saying which setting to change.
    """
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartError("train.device is cuda but no CUDA device is visible; use train.device=cpu")
    if cfg.train.amp.enabled and device.type != "cuda":
        raise StartError(
            "train.amp.enabled=True needs a CUDA device (Detectron2's AMPTrainer); "
            f"train.device is {cfg.train.device}. Drop the flag to train in float32."
        )


def check_output_dir(
    output_dir: str, *, resume: bool = False, overwrite: bool = False, eval_only: bool = False
) -> None:
    """A fresh training run (none of ``resume``, ``overwrite``, ``eval_only``) does not start over
    the checkpoints of an earlier run in ``output_dir``.

    Raises:
        StartError: naming the last checkpoint and the flags that continue or replace that run.
    """
    if eval_only or resume or overwrite:
        return
    found = existing_checkpoint(output_dir)
    if found:
        raise StartError(
            f"{output_dir} already holds checkpoints (last: {found}). Pass --resume to "
            "continue that run, --overwrite to start again over it, or another train.output_dir."
        )


def check_datasets_registered(names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a dataset name Detectron2 does not know."""
    known = DatasetCatalog.list()
    for name in names:
        if name not in known:
            nearest = _nearest(name, known)
            hint = f" Did you mean {nearest}?" if nearest else ""
            raise ConfigError(
                f"dataset {name!r} is not registered. Register your own COCO/LVIS json with "
                f"--dataset {name}:JSON:IMAGE_ROOT.{hint}"
            )


def check_class_count(facts: ConfigFacts) -> None:
    """Every class-count key of the model agrees with the others, and the model predicts as many
    classes as each training dataset has (``thing_classes`` of its metadata, read without loading
    the data; datasets without it are not checked).

    Args:
        facts: the config's :class:`rs_detectron2.data.ConfigFacts`.
    Raises:
        ConfigError: with the override that fixes the model.
    """
    if facts.class_count_problem:
        raise ConfigError(facts.class_count_problem)
    key, num_classes = facts.num_classes_key, facts.num_classes
    if num_classes is None:
        return
    for name in facts.train_names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None or len(classes) == num_classes:
            continue
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(
            f"dataset {name} has {len(classes)} classes ({shown}) but the model predicts "
            f"{num_classes} ({key}={num_classes}). Add the override {key}={len(classes)}"
        )


def mask_format_override(facts: ConfigFacts) -> Optional[str]:
    """The override the training mapper needs for the masks of the training datasets, or None.

    Detectron2's DatasetMapper reads masks as polygons unless ``instance_mask_format`` is
    ``"bitmask"``; RLE masks (non-crowd ones; crowd regions are ignored) only load as bitmasks.

    Returns:
        ``"dataloader.train.mapper.instance_mask_format=bitmask"`` when the mapper loads masks as
        polygons and the data has RLE masks; None otherwise.
    """
    if facts.mask_format != "polygon":
        return None
    if required_mask_format(facts.train_names) == "bitmask":
        return f"{MASK_FORMAT_KEY}=bitmask"
    return None


def check_data(facts: ConfigFacts, images: str, sample: int) -> str:
    """Run the data package's dataset check (:func:`rs_detectron2.data.check_dataset`: the
    annotation file, the geometry and the decoded images) on the training datasets. The datasets
    are not loaded through the catalog here: training does that next.

    Args:
        facts: the config's :class:`rs_detectron2.data.ConfigFacts`, after any mask-format switch.
        images: ``"none"`` (annotations only), ``"sample"`` (decode ``sample`` random images of
            each dataset) or ``"all"``.
        sample: images decoded per dataset with ``images="sample"``.

    Returns:
        The report of the warnings (empty when there is none; statistics are left out).

    Raises:
        DataError: with the report, when any finding is an error.
    """
    findings = []
    for name in facts.train_names:
        findings += check_dataset(
            name,
            num_classes=facts.num_classes,
            num_classes_key=facts.num_classes_key,
            mask_format=facts.mask_format,
            needs_masks=facts.needs_masks,
            box_only_config=facts.box_only_config,
            images=images != "none",
            sample=sample if images == "sample" else None,
            progress=True,
            load=False,
        )
    findings = [f for f in findings if f.severity != "info"]
    if any(f.severity == "error" for f in findings):
        raise DataError(
            f"the training data cannot be used:\n{format_findings(findings)}\nFix the data (or "
            "pass --skip-checks to start anyway)."
        )
    return format_findings(findings) if findings else ""


class TrainingDataCheck(NamedTuple):
    """What :func:`check_training_data` found that the run needs to know."""

    mask_override: Optional[str]  # the override that RLE masks need (see mask_format_override)
    report: str  # the warnings of the data check, "" when there is none


def check_training_data(
    config_file: str, overrides: Sequence[str], images: str = "sample", sample: int = 100
) -> TrainingDataCheck:
    """The checks of a config's training datasets, in order: registered
    (:func:`check_datasets_registered`), as many classes as the model (:func:`check_class_count`),
    the mask format their masks need (:func:`mask_format_override`) and the data itself
    (:func:`check_data`, run with that mask format).

    Args:
        config_file, overrides: the LazyConfig and its ``KEY=VALUE`` overrides.
        images, sample: how many images :func:`check_data` decodes.

    Raises:
        ConfigError, DataError: from the checks above.
    """
    facts = config_facts(config_file, overrides)
    check_datasets_registered(facts.train_names)
    check_class_count(facts)
    fix = mask_format_override(facts)
    if fix:
        facts = dataclasses.replace(facts, mask_format="bitmask")
    return TrainingDataCheck(fix, check_data(facts, images, sample))


def check_eval_weights(path: str) -> None:
    """``--eval-only`` needs weights: ``train.init_checkpoint`` must be set and, when it is a local
    path, exist.

    Raises:
        ConfigError: saying which override to give.
    """
    if not path:
        raise ConfigError(
            "--eval-only needs weights to evaluate: add train.init_checkpoint=PATH (for example "
            "OUTPUT_DIR/model_final.pth)"
        )
    if "://" not in path and not os.path.isfile(path):
        raise ConfigError(f"--eval-only: train.init_checkpoint={path} does not exist")


def _local_ranking_losses(node, prefix: str) -> List[str]:
    """Keys of the LazyCall nodes below ``node`` that build a :class:`RankingLoss` ranking each
    process's entries alone (``pool="local"``, the losses' default)."""
    found = []
    if isinstance(node, DictConfig):
        target = _target(node)
        if isinstance(target, type) and issubclass(target, RankingLoss):
            params = _parameters(target)
            default = params["pool"].default if "pool" in params else "local"
            if node.get("pool", default) == "local":
                found.append(prefix)
            return found
        for k in node.keys():
            found += _local_ranking_losses(node._get_node(k), f"{prefix}.{k}")
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node):
            found += _local_ranking_losses(child, f"{prefix}[{i}]")
    return found


def ranking_pool_warning(cfg, world_size: int) -> Optional[str]:
    """A warning when the ranking pool differs from the paper's recipe, else None.

    The authors train with 4 GPUs x 4 images and each GPU ranks its own 4 images (the paper's
    recipe; docs/getting_started.md, "Ranking pool"). With ``pool="local"`` our heads rank each
    process's images too, so another layout of the batch changes what is ranked against what.

    Args:
        cfg: the LazyConfig with overrides applied. ``train.ranking_pool_images`` is the recipe's
            images per process (4 when absent).
        world_size: training processes (``--num-gpus`` x ``--num-machines``).

    Returns:
        The message (what the run ranks, what the paper ranked, how to get it) when a ranking loss
        of ``cfg.model`` ranks per process and the images per process differ from the recipe's;
        None otherwise. It is logged as a warning too.
    """
    local = _local_ranking_losses(cfg.get("model"), "model")
    if not local:
        return None
    total = int(cfg.dataloader.train.total_batch_size)
    per_process = total // max(int(world_size), 1)
    recipe = int(cfg.train.get("ranking_pool_images", 4))
    if per_process == recipe:
        return None
    layout = (
        f"--num-gpus {total // recipe} with dataloader.train.total_batch_size={total}"
        if total % recipe == 0
        else f"dataloader.train.total_batch_size={recipe * world_size} on {world_size} processes"
    )
    overrides = " ".join(f"{k}.pool=global" for k in local)
    message = (
        "the ranking losses rank each process's images as one pool: "
        f"{per_process} per process here ({total} images over {world_size} processes), "
        f"{recipe} in the paper's recipe. For the paper's pool use {recipe} images per process "
        f"({layout}), or rank the whole batch of {total} images as one pool: {overrides}"
    )
    logger.warning(message)
    return message
