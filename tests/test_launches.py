"""How many operations one forward + backward of the ranking losses runs (each a kernel launch on
a GPU, where at detection sizes their number sets the time), counted with torch.profiler on the
CPU: with the CPU's chunk sizes, and with the GPU path's (``ranking_core.BLOCKS["cuda"]``) so
that the GPU's count holds without a GPU. The bounds are today's counts with a small margin, so
that a change that launches more fails here, and the targets are issue #26's; docs/benchmarks.md
("Launches") gives the counts before and after."""

import sys

import pytest
import torch

from rs_detectron2.losses import rank_sort_loss, ranking_core
from rs_detectron2.utils.testing import REPO, host_reads, ranking_loss_step, top_level_ops

sys.path.insert(0, f"{REPO}/benchmarks")
import harness as H  # noqa: E402

# (loss, N, P, logits, chunk sizes) -> at most this many top-level aten ops (today's + ~3%)
BOUNDS = {
    ("RS", 1_000_000, 1000, "trained", "cuda"): 147,
    ("RS", 1_000_000, 1000, "untrained", "cuda"): 207,
    ("RS", 1_000_000, 1000, "trained", "cpu"): 267,
    ("AP", 1_000_000, 1000, "trained", "cuda"): 145,
    ("aLRP", 1_000_000, 1000, "trained", "cuda"): 200,
    ("RS", 200_000, 20_000, "trained", "cuda"): 398,
    ("AP", 200_000, 20_000, "trained", "cuda"): 201,
}
# The targets (#26): the GPU path's count at detector sizes, with few and with many
# positives (the quality tree), and the CPU path's.
TARGETS = {
    ("RS", 1_000_000, 1000, "trained", "cuda"): 150,
    ("RS", 200_000, 20_000, "trained", "cuda"): 400,
    ("RS", 1_000_000, 1000, "trained", "cpu"): 300,
}


def count(monkeypatch, loss, num, num_pos, regime, blocks):
    monkeypatch.setitem(ranking_core.BLOCKS, "cpu", ranking_core.BLOCKS[blocks])
    logits, targets, loc = H.make_inputs(H.dense(regime, num_pos, num), "cpu")
    ranking_loss_step(loss, logits, targets, loc)  # warm-up
    ops, _ = top_level_ops(lambda: ranking_loss_step(loss, logits, targets, loc))
    with host_reads() as reads:
        ranking_loss_step(loss, logits, targets, loc)
    return sum(ops.values()), reads


@pytest.mark.parametrize("key", list(BOUNDS), ids=lambda k: "-".join(map(str, k)))
def test_operations_per_call_stay_within_bounds(monkeypatch, key):
    ops, reads = count(monkeypatch, *key)
    assert ops <= BOUNDS[key], f"{ops} operations, bound {BOUNDS[key]}"
    assert reads == ["tolist"]  # still one host synchronisation


@pytest.mark.parametrize("key", list(TARGETS), ids=lambda k: "-".join(map(str, k)))
def test_operations_per_call_meet_the_targets(monkeypatch, key):
    ops, _ = count(monkeypatch, *key)
    assert ops <= TARGETS[key], f"{ops} operations, target {TARGETS[key]}"


def test_the_gpu_path_gives_the_same_losses_and_gradients(monkeypatch):
    """The GPU path's larger chunks (and the whole positive-pair matrix at once) change only the
    order of float64 sums: values and gradients agree with the CPU path's to rounding."""
    logits, targets, loc = H.make_inputs(H.dense("untrained", 600, 300_000), "cpu")
    results = {}
    for blocks in ("cpu", "cuda"):
        monkeypatch.setitem(ranking_core.BLOCKS, "cpu", ranking_core.BLOCKS[blocks])
        x = logits.detach().requires_grad_(True)
        loss_rank, loss_sort = rank_sort_loss(x, targets, 0.5)
        loss_rank.backward()
        results[blocks] = (loss_rank.detach(), loss_sort, x.grad)
    for a, b in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
