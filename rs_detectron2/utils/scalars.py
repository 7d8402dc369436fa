"""Scalars logged from inside a model's forward pass without one host synchronisation each.

A head that wants to log a value it holds as a device tensor (e.g. the mean GIoU loss of its
positives) calls :func:`put_tensor_scalar`. Outside a deferral this puts the value into Detectron2's
current event storage at once (``EventStorage.put_scalar`` converts it with ``float()``, a host
synchronisation, as Detectron2's own heads do). Inside :func:`deferred_scalars` the value is only
queued, detached and in float32; whoever opened the deferral reads all queued values in one
transfer (together with anything else it reads, e.g. the loss values) and hands the host numbers
back to :meth:`ScalarQueue.put`. :class:`rs_detectron2.engine.FiniteLossGuard` does this around
every training forward pass, so under the trainer the logged scalars cost no synchronisation of
their own.

Each process logs into its own storage; nothing here communicates between processes.
"""

import contextlib
from contextlib import nullcontext
from typing import Iterator, List, NamedTuple, Sequence, Union

import torch

from detectron2.utils.events import EventStorage, get_event_storage

__all__ = ["ScalarQueue", "deferred_scalars", "put_tensor_scalar"]


class _Entry(NamedTuple):
    storage: EventStorage
    scope: str  # the storage's name scope at queueing time ("" or e.g. "stage1/")
    name: str  # without the scope
    value: torch.Tensor  # detached 0-dim float32 copy
    smoothing_hint: bool


class ScalarQueue:
    """Scalars put by :func:`put_tensor_scalar` while a :func:`deferred_scalars` context is open.

    Each entry remembers the event storage and the name scope (e.g. a cascade stage's
    ``stage1/``) that were current when it was queued.
    """

    def __init__(self):
        self._entries: List[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> List[str]:
        """The full names (name scope included) of the queued scalars, in queueing order."""
        return [e.scope + e.name for e in self._entries]

    def tensors(self, device: Union[torch.device, str, None] = None) -> torch.Tensor:
        """(Q,) float32 tensor of the Q queued values in queueing order, on ``device`` (None: the
        first value's device; CPU when the queue is empty). No host synchronisation."""
        if not self._entries:
            return torch.zeros(0, dtype=torch.float32, device=device or "cpu")
        if device is None:
            device = self._entries[0].value.device
        return torch.stack([e.value.to(device) for e in self._entries])

    def put(self, host_values: Sequence[float]) -> None:
        """Put the queued scalars into their storages at each storage's current iteration, then
        empty the queue.

        Args:
            host_values: Q Python numbers, the host copy of :meth:`tensors` (same order).
        """
        if len(host_values) != len(self._entries):
            raise ValueError(f"{len(self._entries)} queued scalars, got {len(host_values)} values")
        for entry, value in zip(self._entries, host_values, strict=True):
            # the scope it was queued in (EventStorage.name_scope replaces the current one)
            scope = entry.storage.name_scope(entry.scope) if entry.scope else nullcontext()
            with scope:
                entry.storage.put_scalar(entry.name, float(value), entry.smoothing_hint)
        self._entries.clear()

    def add(self, storage: EventStorage, name: str, value: torch.Tensor, hint: bool) -> None:
        """Queue ``value`` (detached, float32 copy) as ``name`` of ``storage``, in the storage's
        current name scope."""
        # Detectron2 has no public getter of the current name scope (EventStorage.name_scope).
        scope = getattr(storage, "_current_prefix", "")
        copy = value.detach().reshape(()).to(torch.float32, copy=True)
        self._entries.append(_Entry(storage, scope, name, copy, hint))


# The open deferrals, innermost last (one per nested deferred_scalars context).
_QUEUES: List[ScalarQueue] = []


@contextlib.contextmanager
def deferred_scalars() -> Iterator[ScalarQueue]:
    """A context in which :func:`put_tensor_scalar` queues its values instead of putting them.

    Yields:
        the :class:`ScalarQueue` that collects them. The opener reads ``queue.tensors()`` to the
        host and calls ``queue.put(values)``; whatever it has not put when the context exits is
        dropped (e.g. when the forward pass raised).
    """
    queue = ScalarQueue()
    _QUEUES.append(queue)
    try:
        yield queue
    finally:
        _QUEUES.remove(queue)


def put_tensor_scalar(name: str, value, smoothing_hint: bool = True) -> None:
    """Log ``value`` as the scalar ``name`` of the current event storage.

    Args:
        name: the scalar's name; the storage's current name scope is prepended, as
            ``EventStorage.put_scalar`` does.
        value: a 0-dim (or one-element) tensor, any floating dtype and device, or a Python number.
            Tensors are detached; inside :func:`deferred_scalars` a float32 copy is queued (no
            host synchronisation), otherwise it is put at once (one synchronisation).
        smoothing_hint: as in ``EventStorage.put_scalar``.
    Raises:
        AssertionError: outside an ``EventStorage`` context (from Detectron2's
            ``get_event_storage``, as any head's ``put_scalar`` call).
    """
    storage = get_event_storage()
    if not isinstance(value, torch.Tensor) or not _QUEUES:
        if isinstance(value, torch.Tensor):
            value = value.detach()
        storage.put_scalar(name, value, smoothing_hint=smoothing_hint)
        return
    _QUEUES[-1].add(storage, name, value, smoothing_hint)
