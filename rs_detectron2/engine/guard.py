"""Stop training at the first non-finite loss, before it reaches the weights.

:class:`FiniteLossGuard` wraps the training model. After each forward pass it checks every loss
term (one host synchronisation for all of them) and raises :class:`NonFiniteLossError` naming the
iteration and the offending terms *before* the backward pass and the optimiser step, so the weights
and the checkpoints written so far stay good. Errors raised inside a loss (the RS loss refuses
non-finite logits) are re-raised with the iteration added.

Under ``torch.distributed`` the verdict is all-reduced, so every process stops at the same iteration
instead of the healthy ones waiting forever in the next gradient all-reduce.

The forward pass runs inside :func:`rs_detectron2.utils.scalars.deferred_scalars`: the scalars the
heads log as tensors (e.g. ``rpn/giou_loss``) are read to the host in the same transfer as the loss
values and then put into the event storage, so logging them costs no synchronisation of its own.
Each process logs into its own storage (no collective).
"""

import math
from typing import Dict, List

import torch
import torch.distributed as dist

from detectron2.utils.events import get_event_storage

from ..utils.scalars import ScalarQueue, deferred_scalars

__all__ = ["FiniteLossGuard", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """A loss term or the logits behind it became NaN or infinite during training."""


def _current_iteration():
    try:
        return get_event_storage().iter
    except AssertionError:  # called outside a trainer (no event storage)
        return None


def _all_processes_ok(ok: bool, device: torch.device) -> bool:
    """True iff ``ok`` is True on every process (a collective when distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ok
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


class FiniteLossGuard(torch.nn.Module):
    """Wraps a training model that returns a dict of losses; raises on non-finite ones.

    In training mode the scalars the model logs with
    :func:`~rs_detectron2.utils.scalars.put_tensor_scalar` are put into the event storage after
    the forward pass, read in the same host transfer as the loss values.

    Args:
        model: the (possibly DDP-wrapped) model; in training mode it maps a batch to
            ``{name: 0-dim loss tensor}``. In eval mode outputs pass through unchecked.
    Raises (from ``forward``):
        NonFiniteLossError: naming the iteration and the non-finite terms with their values, or
            the error a loss raised about non-finite inputs (e.g. RS loss logits).
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batched_inputs):
        if not self.training:
            return self.model(batched_inputs)
        try:
            with deferred_scalars() as queue:
                losses = self.model(batched_inputs)
        except FloatingPointError as e:
            _all_processes_ok(False, self._device())
            raise NonFiniteLossError(
                f"iteration {_current_iteration()}: {e}. Training stopped before this step; "
                "the last checkpoint holds the last good weights."
            ) from e
        bad = self._non_finite(losses, queue)
        if not _all_processes_ok(not bad, self._device()):
            where = (
                ", ".join(f"{k}={v}" for k, v in bad.items())
                if bad
                else "a loss on another process"
            )
            raise NonFiniteLossError(
                f"iteration {_current_iteration()}: non-finite loss: {where}. Training stopped "
                "before this step; the last checkpoint holds the last good weights."
            )
        return losses

    def _device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @staticmethod
    def _non_finite(losses: Dict[str, torch.Tensor], queue: ScalarQueue) -> Dict[str, float]:
        """``{name: value}`` of the non-finite terms (empty if all are finite); puts the queued
        scalars into the event storage, read in the same host transfer as the loss values."""
        names: List[str] = list(losses)
        if not names and not len(queue):
            return {}
        parts = [losses[k].detach().float().reshape(()) for k in names]
        pieces = [torch.stack(parts)] if parts else []
        pieces.append(queue.tensors(parts[0].device if parts else None))
        values = torch.cat(pieces)
        host = values.tolist()  # one host synchronisation for all terms and scalars
        queue.put(host[len(names) :])
        return {k: host[i] for i, k in enumerate(names) if not math.isfinite(host[i])}
