"""Tests of ``rs_detectron2.losses.rank_sort_exact``: its two positive-positive passes
(``rs_detectron2.losses.positive_pairs``) and the walk over the negatives
(``rs_detectron2.losses.ranking_core``).

The dense pass (P x P row chunks) and the quality-tree pass (O(P log P)) must give the values and
gradients of the loop oracle (``rs_detectron2.utils.reference``) and of each other, on cases with
thousands of
positives where the tree is the automatic choice, with ties in targets and logits, delta 0, 0.5
and 1, ignored entries, equal qualities and a single positive. Both ways of walking the negatives
(the flat input in chunks, or the compacted candidates) are covered too.
"""

import dataclasses
import importlib
import math
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rs_detectron2.losses.rank_sort_exact import rank_sort_exact
from rs_detectron2.utils.reference import reference_rank_sort
from rs_detectron2.utils.testing import draw_qualities, host_reads

F64 = torch.float64
# The modules themselves (one's name is also that of its function): their constants are patched.
exact_module = importlib.import_module("rs_detectron2.losses.rank_sort_exact")
pairs_module = importlib.import_module("rs_detectron2.losses.positive_pairs")
core_module = importlib.import_module("rs_detectron2.losses.ranking_core")


def small_blocks(monkeypatch, **sizes):
    """The CPU's chunk sizes (``ranking_core.BLOCKS["cpu"]``) with ``sizes`` replaced."""
    blocks = dataclasses.replace(core_module.BLOCKS["cpu"], **sizes)
    monkeypatch.setitem(core_module.BLOCKS, "cpu", blocks)


def make_case(seed, n, num_pos, *, logits="normal", targets="cont", num_ign=0, trained=False):
    """Seeded float64 flat (logits, targets).

    logits: "normal" (2 N(0, 1)) or "ties" (a grid of step 0.25 in [-1.5, 1.5]: exact ties, and
    pairs exactly 0.5 and 1.0 apart). targets: "cont" (uniform in (0, 1]), "quant" (0.25 steps),
    "ones" (all equal). ``trained``: negatives shifted down and positives up, so that few
    negatives are relevant (the compacted walk); otherwise nearly all are (the flat walk).
    """
    g = torch.Generator().manual_seed(seed)
    if logits == "normal":
        s = 2 * torch.randn(n, generator=g, dtype=F64)
    elif logits == "ties":
        s = torch.randint(-6, 7, (n,), generator=g).to(F64) / 4
    else:
        raise AssertionError(logits)
    perm = torch.randperm(n, generator=g)
    pos, ign = perm[:num_pos], perm[num_pos : num_pos + num_ign]
    if trained and logits == "normal":
        s = s / 2 - 4.0  # negatives ~ N(-4, 1), positives ~ N(2, 1)
        s[pos] += 6.0
    elif trained:
        s = s - 2.25  # negatives on [-3.75, -0.75], positives on [-0.5, 2.5]: ties across
        s[pos] += 2.75
    y = torch.zeros(n, dtype=F64)
    y[pos] = draw_qualities(targets, num_pos, g)
    y[ign] = -1.0
    return s, y


def assert_close(got, expected, rtol):
    """(loss_rank, loss_sort, grad) triples; the gradient's atol is rtol times its largest entry."""
    for a, b in zip(got[:2], expected[:2]):
        torch.testing.assert_close(a.to(F64), b.to(F64), rtol=rtol, atol=1e-12)
    atol = rtol * max(expected[2].abs().max().item(), 1e-30)
    torch.testing.assert_close(got[2].to(F64), expected[2].to(F64), rtol=rtol, atol=atol)


def check_invariants(s, y, loss_rank, grad):
    """The identity update's invariants: sums over positives / negatives, zeros where required."""
    pos, neg = y > 0, y == 0
    tol = 1e-11 * (grad.abs().sum().item() + 1.0)
    assert abs(grad[pos].sum().item() + loss_rank.item()) <= tol
    assert abs(grad[neg].sum().item() - loss_rank.item()) <= tol
    assert torch.all(grad[~pos & ~neg] == 0)
    assert torch.all(grad[neg] >= 0)


# ----------------------------------------------------------------------------------------------
# 1. the tree pass against the loop oracle, thousands of positives


ORACLE_CASES = [
    pytest.param(1, 5000, 2000, 0.5, {"num_ign": 500}, id="p2000-cont-d0.5-ignored"),
    pytest.param(2, 4000, 1500, 0.0, {"logits": "ties", "targets": "quant"}, id="p1500-ties-d0"),
    pytest.param(3, 4000, 1500, 0.5, {"logits": "ties", "targets": "quant"}, id="p1500-ties-d0.5"),
    pytest.param(4, 4000, 1200, 1.0, {"targets": "quant", "num_ign": 300}, id="p1200-quant-d1"),
    pytest.param(5, 3000, 1000, 0.5, {"targets": "ones"}, id="p1000-equal-quality"),
    pytest.param(6, 20000, 1000, 0.5, {"trained": True, "num_ign": 2000}, id="p1000-compacted"),
    pytest.param(7, 20000, 800, 0.0, {"trained": True, "logits": "ties"}, id="p800-compact-d0"),
    pytest.param(8, 1500, 1500, 0.5, {"targets": "quant"}, id="all-positive"),
]


@pytest.mark.parametrize("seed, n, num_pos, delta, kwargs", ORACLE_CASES)
def test_tree_matches_loop_reference(seed, n, num_pos, delta, kwargs):
    s, y = make_case(seed, n, num_pos, **kwargs)
    expected = reference_rank_sort(s, y, delta, use_threshold=True)
    got = rank_sort_exact(s, y, delta, pairs="tree")
    assert_close(got, expected, rtol=1e-9)
    check_invariants(s, y, got[0], got[2])


@pytest.mark.parametrize("leaf_level", [0, 1, 3])
@pytest.mark.parametrize("delta", [0.5, 0.0, 1.0])
def test_deep_tree_with_small_leaves_matches_loop_reference(monkeypatch, leaf_level, delta):
    """Leaves of 1, 2 and 8 quality positions: every tree level and the leaf sums are exercised
    on a few hundred positives with ties in both logits and targets."""
    monkeypatch.setattr(pairs_module, "_LEAF_LEVEL", leaf_level)
    monkeypatch.setattr(pairs_module, "_WIDE_LEAF_MAX_POS", 0)
    s, y = make_case(20 + leaf_level, 900, 300, logits="ties", targets="quant", num_ign=50)
    expected = reference_rank_sort(s, y, delta)
    assert_close(rank_sort_exact(s, y, delta, pairs="tree"), expected, rtol=1e-9)


@pytest.mark.parametrize("num_pos", [1, 2, 3, 17, 64, 65])
@pytest.mark.parametrize("delta", [0.5, 0.0])
def test_tree_small_pools_match_loop_reference(num_pos, delta):
    """A single positive, pools smaller than one leaf and pools one past a power of two."""
    s, y = make_case(30 + num_pos, 200, num_pos, targets="quant", num_ign=10)
    expected = reference_rank_sort(s, y, delta)
    assert_close(rank_sort_exact(s, y, delta, pairs="tree"), expected, rtol=1e-9)


def gpu_tree(monkeypatch, **sizes):
    """The GPU path's chunk sizes on the CPU: the quality tree with its levels side by side."""
    blocks = dataclasses.replace(core_module.BLOCKS["cuda"], **sizes)
    assert blocks.tree_all_levels
    monkeypatch.setitem(core_module.BLOCKS, "cpu", blocks)


@pytest.mark.parametrize("num_pos", [1, 2, 3, 17, 300])
@pytest.mark.parametrize("delta", [0.5, 0.0, 1.0])
def test_tree_with_levels_side_by_side_matches_loop_reference(monkeypatch, num_pos, delta):
    """The GPU path's tree (every level at once): a single positive, pools one past a power of
    two, and a few hundred positives with ties in both logits and targets."""
    gpu_tree(monkeypatch)
    s, y = make_case(70 + num_pos, 900, num_pos, logits="ties", targets="quant", num_ign=50)
    expected = reference_rank_sort(s, y, delta)
    assert_close(rank_sort_exact(s, y, delta, pairs="tree"), expected, rtol=1e-9)


@pytest.mark.parametrize("budget", [1, 1 << 30])
@pytest.mark.parametrize("delta", [0.5, 0.0])
def test_tree_level_groups_match_dense_pass(monkeypatch, budget, delta):
    """3000 positives with the levels one group per level (the smallest budget) and all in one
    group: both agree with the dense pass to float64 rounding."""
    gpu_tree(monkeypatch, tree_min_bytes=budget)
    s, y = make_case(75, 20000, 3000, logits="ties", targets="quant", num_ign=1000)
    dense = rank_sort_exact(s, y, delta, pairs="dense")
    tree = rank_sort_exact(s, y, delta, pairs="tree")
    assert_close(tree, dense, rtol=1e-10)
    check_invariants(s, y, tree[0], tree[2])


# ----------------------------------------------------------------------------------------------
# 2. the tree pass against the dense pass


@pytest.mark.parametrize("delta", [0.5, 0.0, 1.0])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"logits": "normal", "targets": "cont"},
        {"logits": "ties", "targets": "quant"},
        {"logits": "normal", "targets": "quant", "trained": True},
    ],
    ids=["cont", "ties", "trained"],
)
def test_tree_matches_dense_pass(delta, kwargs):
    """3000 positives: values and gradients of the two passes agree to float64 rounding."""
    s, y = make_case(40, 20000, 3000, num_ign=1000, **kwargs)
    dense = rank_sort_exact(s, y, delta, pairs="dense")
    tree = rank_sort_exact(s, y, delta, pairs="tree")
    assert_close(tree, dense, rtol=1e-10)
    check_invariants(s, y, tree[0], tree[2])


def test_tree_matches_dense_pass_in_float32():
    """float32 logits and targets: both passes compute in float64 and round once at the end."""
    s, y = make_case(41, 30000, 3000, targets="quant", num_ign=300)
    s, y = s.float(), y.float()
    dense = rank_sort_exact(s, y, 0.5, pairs="dense")
    tree = rank_sort_exact(s, y, 0.5, pairs="tree")
    assert tree[2].dtype == torch.float32
    assert_close(tree, dense, rtol=1e-6)


@pytest.mark.parametrize("delta", [0.5, 0.0])
def test_tree_leaf_chunks_do_not_change_the_result(delta):
    """A large input lets the tree's leaf sums take more queries per chunk (``budget``): every
    query's leaf is still summed alone, so the result is the same to the bit."""
    s, y = make_case(45, 20000, 3000, targets="quant", num_ign=500)
    pos = y > 0
    p, order = s[pos].sort()
    targets = y[pos][order]
    small = pairs_module.positive_pairs(p, targets, delta, "tree")
    large = pairs_module.positive_pairs(p, targets, delta, "tree", budget=40 << 20)
    for a, b in zip(small, large):
        assert torch.equal(a, b)


@pytest.mark.parametrize("blocks", ["cpu", "cuda"])
@pytest.mark.parametrize("case", ["equal", "sorted"])
def test_sorted_qualities_give_exactly_zero_sorting_terms(monkeypatch, blocks, case):
    """All positives share one target, or every higher-quality positive ranks above every
    lower-quality one by more than 2 delta: no lower-quality positive has H > 0, so D_i = 0
    exactly and the sorting error is exactly 0 in both passes (not rounding noise around it),
    on the CPU path and on the GPU path (the tree with its levels side by side)."""
    monkeypatch.setitem(core_module.BLOCKS, "cpu", core_module.BLOCKS[blocks])
    s, y = make_case(42, 6000, 2000, targets="ones")
    pos = y > 0
    y[pos] = 0.7
    if case == "sorted":
        high = pos & (s > s[pos].median())
        y[high] = 1.0
        s[high] += 10.0
    tree = rank_sort_exact(s, y, 0.5, pairs="tree")
    dense = rank_sort_exact(s, y, 0.5, pairs="dense")
    assert tree[1].item() == 0.0 and dense[1].item() == 0.0
    assert_close(tree, dense, rtol=1e-12)


def test_automatic_choice_and_bad_method():
    """ "auto" uses the dense pass for few positives and the tree for many; both equal it."""
    crossover = pairs_module._TREE_MIN_POS["cpu"]
    few = make_case(43, 2 * crossover, crossover - 1, num_ign=100)
    many = make_case(44, 4 * crossover, crossover + 1, num_ign=100)
    for (s, y), same_as in ((few, "dense"), (many, "tree")):
        auto = rank_sort_exact(s, y, 0.5)
        chosen = rank_sort_exact(s, y, 0.5, pairs=same_as)
        assert torch.equal(auto[2], chosen[2]) and torch.equal(auto[1], chosen[1])
    with pytest.raises(ValueError, match="pairs"):
        rank_sort_exact(torch.zeros(3), torch.zeros(3), 0.5, pairs="fast")


# ----------------------------------------------------------------------------------------------
# 3. the negatives' walk, the inputs and the single synchronisation


@pytest.mark.parametrize("pairs", ["dense", "tree"])
def test_flat_and_compacted_walks_match_loop_reference(pairs, monkeypatch):
    """A trained-like input (few relevant negatives: the compacted walk) and the same input with
    most negatives lifted into the positives' range (the flat walk), each against the oracle. The
    chunk size is lowered so that both walks span several chunks."""
    small_blocks(monkeypatch, neg_max=1000)
    walks = []
    original = exact_module.rank_pool

    def recording(*args, **kwargs):
        pool = original(*args, **kwargs)
        walks.append(pool.walk.flat)
        return pool

    monkeypatch.setattr(exact_module, "rank_pool", recording)
    s, y = make_case(50, 12000, 1500, trained=True, num_ign=600)
    s_flat = s.clone()
    lifted = (y == 0) & (torch.arange(s.numel()) % 4 != 0)
    s_flat[lifted] = s_flat[lifted] + 5.0
    for logits in (s, s_flat):
        expected = reference_rank_sort(logits, y, 0.5, use_threshold=True)
        assert_close(rank_sort_exact(logits, y, 0.5, pairs=pairs), expected, rtol=1e-9)
    assert walks == [False, True]


def test_masked_minimum_in_chunks(monkeypatch):
    """The positives' minimum logit, taken in chunks: any chunk may hold it, the last one may be
    partial, and an empty mask gives +inf."""
    small_blocks(monkeypatch, min_chunk=1000)
    g = torch.Generator().manual_seed(61)
    s = torch.randn(4500, generator=g)
    for where in ([4499], [0, 2500], [999, 1000, 4000]):
        mask = torch.zeros(4500, dtype=torch.bool)
        mask[where] = True
        assert core_module._masked_min(s, mask).item() == s[mask].min().item()
    assert core_module._masked_min(s, torch.zeros_like(s, dtype=torch.bool)).item() == math.inf


@pytest.mark.parametrize("pairs", ["dense", "tree"])
def test_inputs_are_not_modified(pairs):
    s, y = make_case(51, 5000, 1200, logits="ties", targets="quant", num_ign=100)
    s_copy, y_copy = s.clone(), y.clone()
    rank_sort_exact(s, y, 0.5, pairs=pairs)
    rank_sort_exact(s.float(), y.float(), 0.0, pairs=pairs)
    assert torch.equal(s, s_copy) and torch.equal(y, y_copy)


def test_one_host_synchronisation_per_call():
    """The tree pass adds no host round trip: .tolist() / .item() run once per call (CPU stand-in
    for the device synchronisation they cause on a GPU)."""
    s, y = make_case(52, 20000, 3000, targets="quant", num_ign=100)
    with host_reads() as calls:
        rank_sort_exact(s, y, 0.5, pairs="tree")
    assert calls == ["tolist"]


def test_large_pool_values_are_finite_and_bounded():
    """10000 positives among 30000 entries with quantised targets: the tree pass only (the dense
    pass would take seconds); the loss lies in [0, 1] and the invariants hold."""
    s, y = make_case(53, 30000, 10000, targets="quant", num_ign=2000)
    loss_rank, loss_sort, grad = rank_sort_exact(s, y, 0.5, pairs="tree")
    assert 0.0 <= loss_rank.item() <= 1.0 and loss_sort.item() >= 0.0
    assert math.isfinite(grad.abs().max().item())
    check_invariants(s, y, loss_rank, grad)


# ----------------------------------------------------------------------------------------------
# 4. memory: the tensors alive at any one time stay within twice the input


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the tensors created inside the mode that are alive, and their peak.

    Every op's outputs are seen here; a storage counts from its first tensor until its last
    Python tensor object is freed (views share their base's storage, the inputs' storages are not
    counted). Buffers that ATen allocates and frees within one op are not seen.
    """

    def __init__(self, *inputs):
        super().__init__()
        self.ignored = {t.untyped_storage().data_ptr() for t in inputs}
        self.refs = {}  # storage address -> number of live tensor objects
        self.nbytes = {}
        self.tracked = set()
        self.live = 0
        self.peak = 0

    def _release(self, tensor_id, key):
        self.tracked.discard(tensor_id)
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.nbytes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or id(t) in self.tracked:
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self.ignored:
                continue
            self.tracked.add(id(t))
            if key not in self.refs:
                self.refs[key] = 0
                self.nbytes[key] = storage.nbytes()
                self.live += storage.nbytes()
            self.refs[key] += 1
            weakref.finalize(t, self._release, id(t), key)
        self.peak = max(self.peak, self.live)
        return out


def test_dense_pass_on_a_small_input_loops_over_few_chunks(monkeypatch):
    """Mostly positives in a small input: the memory budget alone would give one row per chunk;
    the pass still takes at most Blocks.pair_max_chunks chunks (one sorting-error call each)."""
    calls = []
    original = pairs_module._sorting_error_pairs

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pairs_module, "_sorting_error_pairs", counting)
    s, y = make_case(62, 2500, 2000, targets="quant")
    got = rank_sort_exact(s, y, 0.5, pairs="dense")
    assert 1 < len(calls) <= core_module.BLOCKS["cpu"].pair_max_chunks
    assert_close(got, rank_sort_exact(s, y, 0.5, pairs="tree"), rtol=1e-10)


@pytest.mark.parametrize(
    "num, num_pos, trained, blocks",
    [
        (100_000, 10_000, True, "cpu"),
        (100_000, 10_000, False, "cpu"),
        (1_000_000, 1000, False, "cpu"),
        (100_000, 1000, True, "cpu"),
        # The GPU path's chunks have absolute minimums (64Ki entries), so its bound holds from
        # detector sizes on, not for inputs of a few hundred kB.
        (1_000_000, 1000, False, "cuda"),
        (1_000_000, 1000, True, "cuda"),
        (1_000_000, 20_000, True, "cuda"),
    ],
    ids=[
        "tree-compacted",
        "tree-flat",
        "dense-flat",
        "dense-small-input",
        "gpu-path-matrix-flat",
        "gpu-path-matrix-compacted",
        "gpu-path-tree-compacted",
    ],
)
def test_peak_memory_within_twice_the_input(monkeypatch, num, num_pos, trained, blocks):
    """float32 inputs with one positive in ten (the tree pass and the compacted walk, or the flat
    walk), the benchmark's dense-pass row, and the dense pass on a small input (its row blocks
    shrink with the input): the peak of the live tensors of one call, the returned gradient
    included, stays within 2x the bytes of logits + targets (docs/benchmarks.md, "Peak memory"),
    with the CPU's chunk sizes and with the GPU path's (larger chunks, fewer launches)."""
    monkeypatch.setitem(core_module.BLOCKS, "cpu", core_module.BLOCKS[blocks])
    s, y = make_case(60, num, num_pos, targets="quant", num_ign=num // 50, trained=trained)
    s, y = s.float(), y.float()
    counter = _LiveTensorBytes(s, y)
    with counter:
        result = rank_sort_exact(s, y, 0.5)
    input_bytes = s.numel() * s.element_size() + y.numel() * y.element_size()
    assert counter.live > 0  # the counter saw the returned gradient
    assert counter.peak <= 2 * input_bytes, counter.peak / input_bytes
    expected = rank_sort_exact(s, y, 0.5)  # the counting mode does not change the result
    assert torch.equal(result[2], expected[2])
