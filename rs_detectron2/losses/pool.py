"""Ranking pools: which entries one ranking loss call ranks together.

``"local"`` ranks this process's entries only (the authors' behaviour): the loss then depends on how
many images sit on each GPU. ``"global"`` ranks the entries of every process of a group as one pool:
each process gathers the flat logits and targets of all processes, computes the loss of the
concatenation once and keeps the gradient of its own slice, multiplied by the world size, so that
DistributedDataParallel's averaging gives every parameter the gradient of the global loss.
"""

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = [
    "RANKING_POOLS",
    "check_pool",
    "distributed_world_size",
    "gather_flat",
    "gather_pool",
    "own_gradient",
    "own_slice",
    "pool_group",
]

RANKING_POOLS = ("local", "global")


def check_pool(pool: str) -> str:
    """Return ``pool`` if it is one of :data:`RANKING_POOLS`, else raise ValueError."""
    if pool not in RANKING_POOLS:
        raise ValueError(f"pool must be one of {RANKING_POOLS}, got {pool!r}")
    return pool


def distributed_world_size(group=None) -> int:
    """Number of processes in ``group`` (the default group if None); 1 when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def pool_group(pool: str, group=None):
    """The process group to gather over, or None when the pool is this process alone.

    Args:
        pool: ``"local"`` or ``"global"``.
        group: the group of a global pool (None: every process).
    Returns:
        None for a local pool, or for a global pool without ``torch.distributed`` or with one
        process (both rank exactly the same entries); else the group (``dist.group.WORLD`` for
        None).
    """
    if check_pool(pool) == "local" or distributed_world_size(group) == 1:
        return None
    return dist.group.WORLD if group is None else group


def gather_flat(x: torch.Tensor, group=None) -> Tuple[torch.Tensor, List[int]]:
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
    return torch.cat([part[..., :n] for part, n in zip(parts, sizes, strict=True)], dim=-1), sizes


def own_slice(sizes: List[int], group: Optional[object]) -> slice:
    """The slice of a :func:`gather_flat` concatenation that this process contributed."""
    rank = dist.get_rank(group) if len(sizes) > 1 else 0
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def gather_pool(
    s: torch.Tensor, y: torch.Tensor, group
) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
    """The flat logits ``s`` and targets ``y`` of every process of ``group``, in one all-gather.

    Returns:
        ``(full_s, full_y, sizes)``: the concatenations in rank order (dtypes of ``s`` and ``y``,
        gathered in a dtype that holds each exactly) and the per-process lengths.
    """
    pair = torch.stack([s, y]) if s.dtype == y.dtype else torch.stack([s.double(), y])
    full, sizes = gather_flat(pair, group)
    return full[0].to(s.dtype), full[1], sizes


def own_gradient(grad: torch.Tensor, sizes: List[int], group) -> torch.Tensor:
    """This process's slice of the global pool's gradient, times the world size: DDP averages
    parameter gradients over processes, so that the average is the gradient of the global loss."""
    return grad[own_slice(sizes, group)] * len(sizes)
