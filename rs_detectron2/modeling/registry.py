"""Looking up a yacs config's choice in one of rs_detectron2's registries."""

from typing import Callable

from detectron2.utils.registry import Registry

__all__ = ["registered"]


def registered(registry: Registry, name: str, key: str) -> Callable:
    """The builder registered under ``name``, or a ValueError that names the config ``key`` and
    lists the registered choices.

    Args:
        registry: e.g. :data:`~rs_detectron2.modeling.ASSIGNER_REGISTRY`.
        name: the config's value (e.g. ``cfg.MODEL.RS.DENSE.ASSIGNER``).
        key: the config key, for the message (e.g. ``"MODEL.RS.DENSE.ASSIGNER"``).
    """
    if name not in registry:
        choices = sorted(entry for entry, _ in registry)
        raise ValueError(f"{key} must be one of {choices}, got {name!r}")
    return registry.get(name)
