"""The interface between detection heads and ranking-based losses.

A head that trains its classifier with a ranking loss takes the loss as an argument (an object
chosen in the config, e.g. ``ranking_loss=L(RankSortLoss)(delta=0.5)``) and calls it once per
iteration through :meth:`RankingLoss.head_losses`, with the whole ranking pool and its positives'
boxes. The loss object decides its classification terms *and* how the box loss and any auxiliary
loss (a mask loss) are weighted against them: RS balances them to its own value every iteration
(Oksuz et al., ICCV 2021, Sec. 4); other ranking losses use a constant weight or a balance kept
across iterations. So a head never changes when another ranking loss is swapped in by config.
"""

import contextlib
import math
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import nn

__all__ = [
    "RankingLoss",
    "autocast_off",
    "check_delta",
    "flat_inputs",
    "name_errors",
    "ranking_targets",
]


class RankingLoss(nn.Module):
    """Base class of the ranking losses the RS heads take as their ``ranking_loss`` argument.

    Subclasses implement :meth:`head_losses` and :meth:`balance_auxiliary`. They are modules, so a
    loss that keeps state across iterations can hold it in buffers (saved with the model).
    """

    def head_losses(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        loc_losses: torch.Tensor,
        loc_weights: torch.Tensor,
        *,
        prefix: str,
        loc_name: str = "box",
    ) -> Dict[str, torch.Tensor]:
        """Every training loss of one head: the ranking loss and its localisation loss.

        Args:
            logits: classification logits of the whole ranking pool, any shape (e.g. (N, R, K)).
            targets: same shape: ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive, the value
                being its localisation quality (the IoU of its regressed box with its ground
                truth, or the Dice coefficient of its mask); see :func:`ranking_targets`. Losses
                with binary labels use ``targets > 0``.
            loc_losses: (P,) localisation loss of each of the P positives (with gradient), in the
                order of ``targets.flatten() > 0``, values in [0, 2]: the GIoU loss of its
                regressed box (box heads), or the Dice loss of its mask (box-free heads).
            loc_weights: (P,) detached weights of the positives' localisation losses (their
                max-class scores).
            prefix: the head's key prefix, e.g. ``"loss_rpn"``.
            loc_name: names the localisation loss, ``{prefix}_{loc_name}`` (``"box"``,
                ``"mask"``), for losses that report it separately.
        Returns:
            dict of named 0-dim losses, every key starting with ``prefix``; their sum is what the
            head contributes to the total loss.
        """
        raise NotImplementedError

    def balance_auxiliary(
        self, loss: torch.Tensor, head_losses: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Weight an auxiliary loss of the same head (e.g. the mask loss of Mask R-CNN).

        Args:
            loss: 0-dim auxiliary loss, unweighted.
            head_losses: what :meth:`head_losses` returned for the head this loss belongs to.
        Returns:
            the weighted 0-dim loss.
        """
        raise NotImplementedError

    def scalars(self) -> Dict[str, torch.Tensor]:
        """Named 0-dim tensors worth logging besides the losses (e.g. a balance weight kept across
        iterations); none by default.

        Returns:
            dict name -> detached 0-dim tensor.
        """
        return {}


def check_delta(delta: float, name: str = "", *, positive: bool = False) -> float:
    """``delta`` (the smoothed step's half-width) as a float, if it is finite and >= 0 (> 0 with
    ``positive``: the smoothed step of AP and aLRP Loss divides by 2 delta, with no hard-step
    variant); else raise ValueError, prefixed with ``name``."""
    delta = float(delta)
    if not (delta >= 0 and math.isfinite(delta)):
        raise ValueError(f"delta must be finite and >= 0, got {delta}")
    if positive and delta == 0:
        raise ValueError(f"{name}: delta must be > 0, got {delta}")
    return delta


@contextlib.contextmanager
def name_errors(key: str) -> Iterator[None]:
    """A context that names the loss term whose computation went non-finite: a
    FloatingPointError raised inside is raised again as ``FloatingPointError(f"{key}: {e}")``.

    Heads wrap each ranking loss call in it with the term's key (e.g. ``"loss_rpn_rank"``), so a
    training run that stops on bad logits says which head they came from.
    """
    try:
        yield
    except FloatingPointError as e:
        raise FloatingPointError(f"{key}: {e}") from e


def autocast_off(device_type: str):
    """A context that disables autocast on ``device_type``; ranking losses run in float32/64."""
    enabled = torch.amp.is_autocast_available(device_type)
    return (
        torch.autocast(device_type=device_type, enabled=False)
        if enabled
        else contextlib.nullcontext()
    )


def flat_inputs(
    logits: torch.Tensor, targets: torch.Tensor, name: str
) -> Tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Detached, flattened ``(s, y, out_dtype)`` of a ranking loss's inputs.

    ``s``: the logits promoted to at least float32 (``out_dtype``); ``y``: the targets in
    ``out_dtype`` (float64 targets stay float64). ``name`` prefixes the error messages.

    Raises:
        TypeError: for non floating point logits. ValueError: when the shapes differ.
    """
    if not logits.is_floating_point():
        raise TypeError(f"{name}: logits must be floating point, got {logits.dtype}")
    if logits.shape != targets.shape:
        raise ValueError(
            f"{name}: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            "must have the same shape"
        )
    # float32 and float64 stay, lower precisions become float32 (as torch.promote_types would,
    # which is an operation of its own)
    out_dtype = logits.dtype if logits.dtype == torch.float64 else torch.float32
    s = logits.detach().reshape(-1)
    y = targets.detach().reshape(-1)
    y_dtype = torch.float64 if y.dtype == torch.float64 else out_dtype
    # no conversion where none is needed: each would be an operation of its own
    return (
        (s if s.dtype == out_dtype else s.to(out_dtype)),
        (y if y.dtype == y_dtype else y.to(y_dtype)),
        out_dtype,
    )


def ranking_targets(
    logits: torch.Tensor,
    positives: Tuple[torch.Tensor, ...],
    quality: torch.Tensor,
    ignore: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The targets of a ranking pool: 0 (negative) everywhere, -1 where ``ignore``, and each
    positive's localisation quality at its entry.

    Args:
        logits: the pool's logits, any shape (only shape, dtype and device are used).
        positives: index tuple of the P positive entries into ``logits`` (e.g. ``(image, anchor,
            class)``), in the order of ``quality``; P distinct entries.
        quality: (P,) qualities in (0, 1] (e.g. the IoU of each regressed box with its ground
            truth), detached.
        ignore: optional bool mask over ``logits`` or over its leading dimensions (e.g. (N, R) for
            (N, R, K) logits: every class of an ignored anchor); ignored entries get -1.
    Returns:
        targets of ``logits``'s shape, in ``logits``'s dtype promoted to at least float32.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    targets = torch.zeros(logits.shape, dtype=dtype, device=logits.device)
    if ignore is not None:
        targets[ignore] = -1.0
    targets[positives] = quality.detach().to(dtype)
    return targets
