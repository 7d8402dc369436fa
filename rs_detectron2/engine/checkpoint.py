"""Checkpoints that are never left half-written."""

import os
from typing import Optional

import torch

from detectron2.checkpoint import DetectionCheckpointer

from .guard import NonFiniteLossError

__all__ = ["AtomicCheckpointer", "existing_checkpoint"]


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


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose checkpoint files and ``last_checkpoint`` tag are written to a
    temporary file and renamed into place, so a run killed at any moment leaves either the previous
    checkpoint or the new one, never a truncated file. Remote (``scheme://``) save dirs fall back
    to Detectron2's behaviour.
    """

    def save(self, name: str, **kwargs) -> None:
        """Save ``name``.pth atomically; refuses (NonFiniteLossError) to save non-finite weights,
        so that ``last_checkpoint`` always names good weights."""
        if self.save_dir and self.save_to_disk:
            _check_finite_weights(self.model, name)
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


def existing_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint a run in ``output_dir`` would resume from, or None if there is none."""
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        return os.path.join(output_dir, f.read().strip())
