import os
from typing import List, Optional

import torch

from detectron2.config import LazyConfig, instantiate

__all__ = ["config_dir", "get", "get_config", "get_config_file", "list_configs"]


def config_dir() -> str:
    """The ``configs/`` folder: inside the package when installed from a wheel (``setup.py`` copies
    it there), else the checkout's ``configs/`` (source tree or editable install)."""
    packaged = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")


def list_configs() -> List[str]:
    """Every model config (not the shared pieces in ``common/``), as paths relative to configs/."""
    root = config_dir()
    found = []
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel.split(os.sep)[0] in ("common", "__pycache__"):
            continue
        found += [os.path.normpath(os.path.join(rel, f)) for f in files if f.endswith(".py")]
    return sorted(found)


def get_config_file(config_path: str) -> str:
    """Absolute path of a shipped config; ``config_path`` is relative to configs/."""
    path = os.path.join(config_dir(), config_path)
    if not os.path.isfile(path):
        raise RuntimeError(
            f"{config_path} is not a config of rs_detectron2; see model_zoo.list_configs()"
        )
    return path


def get_config(config_path: str, trained: bool = False):
    """The LazyConfig (omegaconf DictConfig) of a shipped config.

    ``trained=True`` would point ``train.init_checkpoint`` at released weights; none are released
    yet, so it raises rather than silently returning an untrained recipe.
    """
    if trained:
        raise RuntimeError(
            f"no trained weights are released for {config_path}: rs_detectron2 ships the recipe; "
            "train it with train_net.py and load your checkpoint"
        )
    return LazyConfig.load(get_config_file(config_path))


def get(config_path: str, trained: bool = False, device: Optional[str] = None):
    """Instantiate the model of a shipped config (in training mode) on ``device``.

    ``device`` defaults to CUDA when available, else CPU.
    """
    cfg = get_config(config_path, trained)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = instantiate(cfg.model)
    return model.to(device)
