"""benchmarks/harness.py and the two loss benchmarks that share it: the cases' inputs, the tables,
and the losses each benchmark times, on tiny inputs (the benchmarks themselves take minutes)."""

import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # as running a script from benchmarks/ does

import bench_rank_sort  # noqa: E402
import bench_ranking_losses  # noqa: E402
import harness  # noqa: E402

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "case",
    [harness.dense("trained", 30, 4000), harness.rcnn("untrained", 12, images=2, rois=50)],
    ids=lambda c: c.name,
)
def test_inputs_match_their_case(case):
    logits, targets, loc = harness.make_inputs(case, CPU)
    assert logits.dtype == targets.dtype == loc.dtype == torch.float32
    assert logits.numel() == case.num and logits.shape == targets.shape
    positives = targets > 0
    assert int(positives.sum()) == case.num_pos == loc.numel()
    low = 0.1 if case.head == "dense" else 0.5
    assert bool((targets[positives] >= low).all() and (targets[positives] <= 1).all())
    if case.head == "rcnn":  # one-hot: at most one positive class per RoI
        assert logits.shape == (case.images * case.rois, case.classes)
        assert int(positives.sum(1).max()) == 1
    if case.regime == "trained":  # positives ~ N(2, 1) well above negatives ~ N(-4, 1)
        assert logits[positives].mean() > logits[~positives].mean() + 4
    again = harness.make_inputs(case, CPU)
    assert all(torch.equal(a, b) for a, b in zip((logits, targets, loc), again, strict=True))


def test_cases_selection_and_formatting(capsys):
    cases = harness.standard_cases(quick=False)
    assert len(cases) == 9 and len({c.name for c in cases}) == 9
    assert [c.name for c in harness.select(cases, "rcnn")] == [
        "rcnn-untrained-P500",
        "rcnn-untrained-P1000",
        "rcnn-untrained-P3000",
    ]
    assert harness.select(cases, "") == cases
    assert (harness.sci(1_000_000), harness.sci(1_280_000)) == ("1e6", "1.28e6")
    assert (harness.ms(None), harness.ms(12.34), harness.ms(1234.5)) == ("-", "12.3", "1234")
    harness.print_grid(["a", "b"], [["x", "1"]], markdown=True, left=1)
    assert capsys.readouterr().out.splitlines() == ["| a | b |", "|---|---:|", "| x | 1 |"]


def test_interleaved_repeats_each_method_as_asked():
    calls = []
    times = harness.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, {"a": 2, "b": 1}, CPU
    )
    assert calls == ["a", "b", "a"] and [len(times["a"]), len(times["b"])] == [2, 1]


def test_rank_sort_benchmark_losses_agree():
    """The benchmark's dense-pass and automatic-pass losses are rank_sort_loss."""
    case = harness.dense("untrained", 40, 3000)
    logits, targets = bench_rank_sort.make_inputs(case, CPU)
    fast = bench_rank_sort.forward_backward(bench_rank_sort.fast_loss, logits, targets)
    for loss_fn in (bench_rank_sort.dense_pass_loss, bench_rank_sort.tree_pass_loss):
        got = bench_rank_sort.forward_backward(loss_fn, logits, targets)
        assert all(torch.equal(a, b) for a, b in zip(got, fast, strict=True))


def test_ranking_family_table_runs(capsys):
    case = harness.dense("trained", 20, 5000)
    bench_ranking_losses.family_table([case], CPU, memory=False, markdown=True, reps=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("| input |") and "AP / RS" in lines[-3]
    assert lines[-1].startswith("| dense, trained | 5e3 | 20 |")


@pytest.mark.parametrize("family", ["ap", "alrp"])
def test_ranking_benchmark_loops_agree_with_the_losses(family):
    """The authors' loops the benchmark times compute the exact losses (its own check passes)."""
    logits, targets, loc = harness.make_inputs(harness.dense("untrained", 15, 600), CPU)
    assert bench_ranking_losses.check(family, logits, targets, loc, CPU) >= 0
