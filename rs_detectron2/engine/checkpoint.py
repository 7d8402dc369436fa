"""Checkpoints that are never left half-written, weights that load completely or not at all, and
one run per output folder."""

import os
import time
from typing import List, Optional

import torch

from detectron2.checkpoint import DetectionCheckpointer

from .guard import NonFiniteLossError
from .model_info import MODEL_INFO_KEY, read_model_info

__all__ = [
    "AtomicCheckpointer",
    "ResumeMismatchError",
    "existing_checkpoint",
    "load_weights",
    "move_run_aside",
]


def _is_local(path: str) -> bool:
    return "://" not in path


def _atomic_write(path: str, write) -> None:
    """Write through ``write(file)`` into ``path + '.tmp'``, fsync, then rename over ``path``."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_finite_weights(model: torch.nn.Module, name: str) -> None:
    """Raise NonFiniteLossError naming the first parameter or buffer with a NaN or inf."""
    tensors = [(k, v) for k, v in model.state_dict().items() if torch.is_floating_point(v)]
    if not tensors:
        return
    flags = [torch.isfinite(v).all() for _, v in tensors]
    finite = torch.stack([f.to(flags[0].device) for f in flags]).cpu()  # one synchronisation
    if bool(finite.all()):
        return
    bad = tensors[int((~finite).nonzero()[0])][0]
    raise NonFiniteLossError(
        f"not saving {name}: the weights hold NaN or inf values (first: {bad}); the previous "
        "checkpoint is kept"
    )


class ResumeMismatchError(ValueError):
    """``--resume`` found a checkpoint of another model or optimiser in the output folder.

    Attributes:
        checkpoint (str): the checkpoint it would resume from.
        problems (list[str]): what did not fit (weights, optimiser state).
    """

    def __init__(self, checkpoint: str, problems: List[str]):
        self.checkpoint, self.problems = checkpoint, list(problems)
        info = read_model_info(checkpoint) or {}
        written = f", written by {info['config_file']}" if info.get("config_file") else ""
        super().__init__(
            f"cannot resume from {checkpoint}{written}: it does not fit this config's model or "
            "optimiser:\n  " + "\n  ".join(self.problems) + "\nResume with the config that "
            "wrote it, or start a new run from its weights: another train.output_dir (or "
            f"--overwrite) and train.init_checkpoint={checkpoint}."
        )


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose checkpoint files and ``last_checkpoint`` tag are written to a
    temporary file and renamed into place, so a run killed at any moment leaves either the previous
    checkpoint or the new one, never a truncated file. Remote (``scheme://``) save dirs fall back
    to Detectron2's behaviour.

    After :meth:`load`, :meth:`incompatible_keys` says which weights did not match the model.
    When :attr:`model_info` is set (:func:`~rs_detectron2.engine.model_info.model_info_from_config`:
    the classes, input format, pixel statistics and test resize the model is trained for), every
    checkpoint saved carries it as its ``"model_info"`` entry.
    """

    last_incompatible = None  # fvcore's _IncompatibleKeys of the last load, None before any
    model_info = None  # dict saved with every checkpoint, None: none

    def _load_model(self, checkpoint):
        # Detectron2 only logs the keys that did not load; keep them so the caller can refuse.
        self.last_incompatible = super()._load_model(checkpoint)
        return self.last_incompatible

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Detectron2's ``resume_or_load``, except that a resumed checkpoint must be of this model
        and optimiser: one whose weights do not all fit the model, or whose optimiser or scheduler
        state does not fit theirs, raises :class:`ResumeMismatchError` (a fresh start from
        ``path`` may load weights partially, as fine-tuning does)."""
        resuming = resume and self.has_checkpoint()
        last = self.get_checkpoint_file() if resuming else None
        self.last_incompatible = None
        try:
            checkpoint = super().resume_or_load(path, resume=resume)
        except ValueError as e:  # torch's optimiser: groups or sizes of another model
            if not resuming:
                raise
            problems = self.incompatible_keys() + [f"optimiser state: {e}"]
            raise ResumeMismatchError(last, problems) from e
        if resuming and self.incompatible_keys():
            raise ResumeMismatchError(last, self.incompatible_keys())
        return checkpoint

    def incompatible_keys(self) -> List[str]:
        """Lines describing the weights of the last :meth:`load` that did not match the model:
        model keys missing from the checkpoint, checkpoint keys the model does not have, and
        keys whose shapes differ (those are not loaded). Empty when everything matched."""
        inc = self.last_incompatible
        if inc is None:
            return []
        reshaped = {k for k, _, _ in inc.incorrect_shapes}  # fvcore also lists them as missing
        shapes = [f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in inc.incorrect_shapes]
        lines = []
        for what, keys in (
            ("missing from the checkpoint", [k for k in inc.missing_keys if k not in reshaped]),
            ("not in the model", inc.unexpected_keys),
            ("with another shape", shapes),
        ):
            if keys:
                shown = ", ".join(list(keys)[:5]) + (", ..." if len(keys) > 5 else "")
                lines.append(f"{len(keys)} keys {what}: {shown}")
        return lines

    def save(self, name: str, **kwargs) -> None:
        """Save ``name``.pth atomically; refuses (NonFiniteLossError) to save non-finite weights,
        so that ``last_checkpoint`` always names good weights."""
        if self.save_dir and self.save_to_disk:
            _check_finite_weights(self.model, name)
        if self.model_info is not None:
            kwargs = {MODEL_INFO_KEY: self.model_info, **kwargs}
        if not self.save_dir or not self.save_to_disk or not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        _atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        path = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(path, lambda f: f.write(last_filename_basename.encode()))


def load_weights(model: torch.nn.Module, weights: str) -> List[str]:
    """Load the checkpoint ``weights`` (a path or URL Detectron2's checkpointer reads) into
    ``model`` and say what did not match.

    Returns:
        The lines of :meth:`AtomicCheckpointer.incompatible_keys` (missing, unexpected and reshaped
        keys, the last not loaded); empty when the weights match the model. The caller decides
        whether a partial load is acceptable.
    """
    checkpointer = AtomicCheckpointer(model)
    checkpointer.load(weights)
    return checkpointer.incompatible_keys()


def existing_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint a run in ``output_dir`` would resume from, or None if there is none."""
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        return os.path.join(output_dir, f.read().strip())


def move_run_aside(output_dir: str) -> Optional[str]:
    """Rename a non-empty ``output_dir`` to ``<output_dir>.old-<YYYYmmdd-HHMMSS>`` (a free name)
    so that a new run starts in an empty folder: no checkpoints, ``last_checkpoint``,
    ``metrics.json`` or TensorBoard event files of the earlier run remain beside the new ones, and
    nothing is deleted.

    Returns:
        The folder the earlier run now lives in, or None when there was nothing to move.
    """
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None
    base = f"{os.path.normpath(output_dir)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    dest, n = base, 1
    while os.path.exists(dest):
        dest, n = f"{base}-{n}", n + 1
    os.rename(output_dir, dest)
    return dest
