"""The global ranking pool across processes (Gloo on CPU) equals one process on the whole batch."""

import pytest
import torch
import torch.multiprocessing as mp

from rs_detectron2.losses import rank_sort_loss
from rs_detectron2.losses.pool import gather_flat
from rs_detectron2.utils import testing


def _spawn(fn, world, tmp_path, *args):
    init_file = str(tmp_path / "dist_init")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    mp.spawn(fn, args=(world, init_file, str(out_dir), *args), nprocs=world, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(world)]


def _pool(n, k, num_pos, seed):
    """Logits (n, k) and targets with ``num_pos`` positives of random quality, a few ignored."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    targets = torch.zeros(n, k, dtype=torch.float64)
    flat = targets.view(-1)
    idx = torch.randperm(n * k, generator=g)
    flat[idx[:num_pos]] = torch.rand(num_pos, generator=g, dtype=torch.float64) * 0.9 + 0.05
    flat[idx[num_pos : num_pos + 7]] = -1
    logits.view(-1)[idx[:num_pos]] += 1.0  # positives score higher on average
    return logits, targets


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 23, 40],  # uneven split
        [0, 0, 40],  # rank 0 has no entries at all
    ],
)
def test_global_pool_two_processes_equals_one_process(tmp_path, bounds):
    logits, targets = _pool(40, 5, num_pos=30, seed=3)
    results = _spawn(testing.global_pool_loss_worker, 2, tmp_path, logits, targets, bounds, 0.5)

    whole = logits.clone().requires_grad_(True)
    ref_rank, ref_sort = rank_sort_loss(whole, targets, 0.5)
    ref_rank.backward()
    for r, res in enumerate(results):
        assert torch.allclose(res["rank"], ref_rank.detach(), rtol=1e-12, atol=1e-12)
        assert torch.allclose(res["sort"], ref_sort, rtol=1e-12, atol=1e-12)
        lo, hi = bounds[r], bounds[r + 1]
        # each process holds world_size x its slice of the global gradient (DDP averages)
        assert torch.allclose(res["grad"] / 2, whole.grad[lo:hi], rtol=1e-10, atol=1e-14)


def test_global_pool_when_one_process_has_no_positives(tmp_path):
    logits, targets = _pool(40, 5, num_pos=12, seed=4)
    targets[:20].clamp_(max=0)  # rank 0's slice: negatives and ignored only
    bounds = [0, 20, 40]
    results = _spawn(testing.global_pool_loss_worker, 2, tmp_path, logits, targets, bounds, 0.5)
    whole = logits.clone().requires_grad_(True)
    ref_rank, _ = rank_sort_loss(whole, targets, 0.5)
    ref_rank.backward()
    # rank 0's negatives still get gradient from rank 1's positives: the pool is shared
    assert results[0]["grad"].abs().sum() > 0
    for r, res in enumerate(results):
        assert torch.allclose(res["rank"], ref_rank.detach(), rtol=1e-12)
        assert torch.allclose(res["grad"] / 2, whole.grad[bounds[r] : bounds[r + 1]], atol=1e-14)


@pytest.mark.parametrize("pool", ["global", "local"])
def test_ddp_parameter_gradients_with_global_pool(tmp_path, pool):
    """With DDP the parameters' gradients equal one process's on the concatenated batch exactly
    when the pool is global; with per-process pools they generally do not (the known dependence
    on images per GPU that the global pool removes)."""
    torch.manual_seed(0)
    model = testing.PoolModel(6, 4).double()
    state = {k: v.float() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(30, 6, generator=g)
    _, targets = _pool(30, 4, num_pos=25, seed=5)
    targets = targets.float()
    bounds = [0, 12, 30]
    results = _spawn(testing.ddp_pool_worker, 2, tmp_path, state, feats, targets, bounds, pool)

    ref = testing.PoolModel(6, 4)
    ref.load_state_dict(state)
    loss, _ = rank_sort_loss(ref(feats), targets)
    loss.backward()
    for res in results:
        for name, p in ref.named_parameters():
            close = torch.allclose(res["grads"][name], p.grad, rtol=1e-5, atol=1e-7)
            assert close == (pool == "global"), (pool, name)


def test_without_distributed_the_global_pool_is_the_local_loss():
    logits, targets = _pool(25, 3, num_pos=10, seed=6)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    la, sa = rank_sort_loss(a, targets, pool="global")
    lb, sb = rank_sort_loss(b, targets)
    la.backward()
    lb.backward()
    assert torch.equal(la, lb) and torch.equal(sa, sb) and torch.equal(a.grad, b.grad)
    full, sizes = gather_flat(logits.view(-1))
    assert sizes == [75] and torch.equal(full, logits.view(-1))


def test_unknown_pool_is_rejected():
    with pytest.raises(ValueError, match="pool"):
        rank_sort_loss(torch.zeros(3), torch.zeros(3), pool="world")
