"""Rank & Sort loss over the whole global batch: one ranking pool shared by every process.

By default each process ranks its own images (the authors' behaviour), so the loss depends on how
many images sit on each GPU. With the global pool, every process gathers the logits and targets of
all processes (``torch.distributed.all_gather``, padded to the longest pool), computes the exact loss
and identity-update gradient of the concatenated pool once, and keeps the gradient of its own slice.

The slice's gradient is multiplied by the world size. DistributedDataParallel averages parameter
gradients over processes, so after that average the parameters receive exactly the gradient of the
global-pool loss, the same as one process holding the concatenated batch would compute.
"""


import torch
import torch.distributed as dist

from .rank_sort import _autocast_off, _flat_inputs, _save_and_return
from .rank_sort_exact import rank_sort_exact

__all__ = ["distributed_world_size", "gather_flat", "global_rank_sort_loss"]


def distributed_world_size(group=None) -> int:
    """Number of processes in ``group`` (the default group if None); 1 when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def gather_flat(x: torch.Tensor, group=None) -> tuple[torch.Tensor, list[int]]:
    """Concatenate the tensors ``x`` of every process in rank order along the last dimension.

    Args:
        x: (..., n_r) tensor on this process; ``n_r`` may differ between processes, the leading
            dimensions, dtype and device must agree.
        group: process group (default: the global group).
    Returns:
        ``(full, sizes)``: the (..., sum n_r) concatenation, identical on every process, and the
        list of the per-process lengths ``n_r`` in rank order.
    """
    world = distributed_world_size(group)
    if world == 1:
        return x, [x.shape[-1]]
    size = torch.tensor([x.shape[-1]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    sizes = [int(n) for n in torch.cat(sizes).tolist()]
    padded = x.new_zeros((*x.shape[:-1], max(sizes)))
    padded[..., : x.shape[-1]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[..., :n] for part, n in zip(parts, sizes)], dim=-1), sizes


class _GlobalRankSort(torch.autograd.Function):
    """(loss_rank, loss_sort) of the global pool; backward returns this process's gradient slice."""

    @staticmethod
    def forward(ctx, logits, targets, delta, group):
        with _autocast_off(logits.device.type):
            s, y, out_dtype = _flat_inputs(logits, targets)
            # One gather for both rows, in a dtype that holds each exactly.
            pair = torch.stack([s, y]) if s.dtype == y.dtype else torch.stack([s.double(), y])
            full, sizes = gather_flat(pair, group)
            full_s, full_y = full[0].to(s.dtype), full[1]
            loss_rank, loss_sort, grad = rank_sort_exact(full_s, full_y, float(delta))
            rank = dist.get_rank(group) if len(sizes) > 1 else 0
            start = sum(sizes[:rank])
            own = grad[start : start + s.numel()] * len(sizes)
        return _save_and_return(ctx, own, logits.shape, loss_rank, loss_sort, out_dtype)

    @staticmethod
    def backward(ctx, grad_rank, grad_sort):
        (grad,) = ctx.saved_tensors
        return grad * grad_rank, None, None, None


def global_rank_sort_loss(
    logits: torch.Tensor, targets: torch.Tensor, delta: float = 0.5, group: object | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank & Sort loss with one ranking pool made of every process's logits.

    Must be called by every process of ``group`` (it is a collective), also by those without
    positives or with empty input. Without ``torch.distributed`` (or with one process) it equals
    :func:`rank_sort_loss`.

    Args:
        logits: this process's logits, any shape; floating point, finite.
        targets: same shape; ``< 0`` ignored, ``0`` negative, ``(0, 1]`` positive quality.
        delta: half-width of the smoothed step (0.5 in the paper).
        group: process group to pool over (default: all processes).
    Returns:
        ``(loss_rank, loss_sort)``: 0-dim float32 tensors (float64 for float64 logits), the loss of
        the global pool, identical on every process. The gradient w.r.t. ``logits`` is this
        process's slice of the global identity-update gradient times the world size (DDP's
        averaging then gives the gradient of the global loss).
    """
    return _GlobalRankSort.apply(logits, targets, float(delta), group)
