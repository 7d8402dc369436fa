"""Functions run inside the worker processes of tests/test_distributed.py (Gloo on CPU).

Each worker joins a process group, computes something, and saves its results with torch.save to
``out_dir/rank{r}.pt`` for the parent test to compare.
"""

import os

import torch
import torch.distributed as dist

from rs_detectron2.losses import rank_sort_loss


def _init(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def global_pool_loss_worker(rank, world, init_file, out_dir, logits, targets, bounds, delta):
    """Rank ``rank`` takes ``logits[bounds[rank]:bounds[rank+1]]`` (and its targets) and computes
    the global-pool loss; saves the loss values and the gradient of its slice."""
    _init(rank, world, init_file)
    try:
        lo, hi = bounds[rank], bounds[rank + 1]
        mine = logits[lo:hi].clone().requires_grad_(True)
        loss_rank, loss_sort = rank_sort_loss(mine, targets[lo:hi], delta, pool="global")
        loss_rank.backward()
        torch.save(
            {"rank": loss_rank.detach(), "sort": loss_sort, "grad": mine.grad},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


class PoolModel(torch.nn.Module):
    """Tiny scorer: features (n, d) -> logits (n, k); the thing DDP wraps in the tests."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.fc = torch.nn.Linear(d, k)

    def forward(self, x):
        return self.fc(x)


def ddp_pool_worker(rank, world, init_file, out_dir, state, feats, targets, bounds, pool):
    """DDP over :class:`PoolModel` loaded from ``state``; rank ``rank`` scores its slice of the
    batch, backpropagates loss_rank with the given ``pool`` and saves the averaged parameter grads."""
    _init(rank, world, init_file)
    try:
        model = PoolModel(feats.shape[1], targets.shape[1])
        model.load_state_dict(state)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        lo, hi = bounds[rank], bounds[rank + 1]
        loss_rank, _ = rank_sort_loss(ddp(feats[lo:hi]), targets[lo:hi], pool=pool)
        loss_rank.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        torch.save({"loss": loss_rank.detach(), "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
