"""Gradient clipping by global norm for any ``torch.optim.Optimizer``.

The RS paper's R-CNN recipes train without clipping; this is for settings that need it, such as
the tiny from-scratch CPU RS-Cascade R-CNN (see configs/quick_schedules/rs_cascade_rcnn_tiny.py).

Two entry points:

- :func:`clip_gradients` wraps an optimizer that already exists, e.g. from a LazyConfig::

      optimizer = L(clip_gradients)(optimizer=L(torch.optim.SGD)(params=..., lr=0.01), max_norm=10)

- :func:`optimizer_with_gradient_clipping` builds the optimizer and wraps it. It takes the
  optimizer's own arguments, so it can replace the ``_target_`` of an existing optimizer node while
  keeping its keys (``train_net.py`` sets ``cfg.optimizer.params.model``; ``optimizer.lr=...``
  overrides keep working)::

      optimizer._target_ = optimizer_with_gradient_clipping
      optimizer.max_norm = 10.0
"""

import math

import torch
from detectron2.utils.registry import locate

__all__ = ["clip_gradients", "optimizer_with_gradient_clipping"]

_CLIPPED_CLASSES = {}


def _clipped_class(base):
    """A subclass of ``base`` whose ``step`` clips the global gradient norm first (cached)."""
    if getattr(base, "_clips_gradients", False):
        return base
    if base not in _CLIPPED_CLASSES:

        def step(self, closure=None):
            loss = None
            if closure is not None:
                # The closure recomputes the gradients, so it must run before they are clipped.
                with torch.enable_grad():
                    loss = closure()
            params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
            if params:
                self.last_grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, self.max_grad_norm, self.grad_norm_type
                )
            base.step(self)
            return loss

        _CLIPPED_CLASSES[base] = type(
            base.__name__ + "WithGradientClipping",
            (base,),
            {"step": step, "_clips_gradients": True, "__module__": __name__},
        )
    return _CLIPPED_CLASSES[base]


def clip_gradients(optimizer, max_norm, norm_type=2.0):
    """Make ``optimizer`` clip the gradients of all its parameters by their global norm.

    Before every ``optimizer.step()`` the gradients of all parameters of all param groups are
    scaled together by ``min(1, max_norm / total_norm)`` (``torch.nn.utils.clip_grad_norm_``), so
    the update direction is kept and only its length is bounded. The norm before clipping is kept
    in ``optimizer.last_grad_norm``. Under Detectron2's ``AMPTrainer`` the ``GradScaler`` unscales
    the gradients before calling ``step``, so the clipping sees true gradients.

    Args:
        optimizer (torch.optim.Optimizer): changed in place (its class becomes a subclass of its
            class that clips in ``step``) and returned.
        max_norm (float or None): the largest allowed global norm. ``None`` or ``inf`` disables
            clipping: the optimizer is returned unchanged.
        norm_type (float): the p of the p-norm (2 = Euclidean; ``inf`` = largest absolute value).

    Returns:
        The same optimizer object.
    """
    if max_norm is None or math.isinf(max_norm):
        return optimizer
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, None or inf; got {max_norm}")
    optimizer.__class__ = _clipped_class(type(optimizer))
    optimizer.max_grad_norm = float(max_norm)
    optimizer.grad_norm_type = float(norm_type)
    return optimizer


def optimizer_with_gradient_clipping(
    params, max_norm=None, norm_type=2.0, optimizer_class="torch.optim.SGD", **kwargs
):
    """Build ``optimizer_class(params, **kwargs)`` and apply :func:`clip_gradients` to it.

    Args:
        params: the parameters or param groups, as for any torch optimizer.
        max_norm, norm_type: see :func:`clip_gradients` (``None`` = no clipping).
        optimizer_class (type or str): the optimizer class, or its import path.
        kwargs: the optimizer's other arguments (lr, momentum, weight_decay, ...).
    """
    if isinstance(optimizer_class, str):
        optimizer_class = locate(optimizer_class)
    return clip_gradients(optimizer_class(params, **kwargs), max_norm, norm_type)
