"""Benchmark: fast Rank & Sort loss vs the authors' loop over positives.

What is measured
    For each case (a flat pool of logits with IoU-like targets), the wall-clock time of one
    forward + backward through autograd of

    * ``reference``: ``rs_detectron2.utils.reference.reference_rank_sort`` in float32 with
      ``use_threshold=True`` -- the authors' algorithm (spec 1.7): a Python loop over positives,
      float32 buffers, only the relevant negatives (s >= min positive logit - delta). It is wrapped
      in a small ``torch.autograd.Function`` whose backward returns the saved gradient times the
      upstream gradient of ``loss_rank``, the same contract as the fast loss;
    * ``fast``: ``rs_detectron2.losses.rank_sort_loss`` (custom autograd Function).

    Both run on the same inputs, in the same process, with repeats interleaved; the reported
    time is the median (the machine's wall clock is noisy). Before timing, each case is checked
    once: loss values must agree to 1e-4 relative and gradients to 1e-4 of the max abs gradient,
    otherwise the benchmark aborts. That check is also the warm-up call of both sides.

    CPU noise control: glibc's malloc thresholds are fixed for the timing process (the reference
    loop otherwise page-faults its temporaries again on every positive, by 1x-10x depending only
    on heap history; see ``tune_glibc_malloc``, ``--system-malloc`` to skip), and the CPU time
    used by other processes during the run is printed, with a warning above 10%.

    Peak extra memory of the fast loss (forward + backward, including the returned gradient):
    on CUDA from the caching allocator's peak statistics; on CPU from the growth of the peak
    resident set size of a fresh spawned process per case, with the default malloc settings
    (see ``_cpu_peak_child``).

Cases (delta = 0.5)
    dense head: N = 1e6 logits, P = 50 / 200 / 1000 positives, regimes "trained" (negatives
    ~ N(-4, 1), positives ~ N(2, 1): few negatives are relevant) and "untrained" (all logits
    ~ N(0, 1): nearly every negative is relevant). Targets of positives ~ U(0.1, 1].
    R-CNN head: 16 images x 1000 RoIs x 80 classes (1.28e6 logits), P = 500 / 1000 / 3000
    positive RoIs, one-hot over classes (the GT class gets an IoU target ~ U(0.5, 1], the other
    79 classes are negatives), all logits ~ N(0, 1) (untrained).

Scale table and target rows (``--tables scale,targets``)
    Trained-like dense inputs for N in {1e5, 1e6, 1e7} x P in {1e2, 1e3, 1e4, 1e5} (P < N), and the
    rows of issue 13 that carry a target. Three columns side by side in one run: the authors' loop
    (each in a fresh process, median of 3 runs, or 1 run above 5 s; not started when a lower bound
    from 32 of its positives exceeds 60 s, stopped after 60 s), the exact loss with the dense
    P x P positive-positive pass (``rank_sort_exact(pairs="dense")``, not run above P = 20000) and
    with the automatic choice (``pairs="auto"``: the quality tree above the crossover). The dense
    and the new pass are checked against each other first (gradients to 1e-4 of the largest).
    The last column is the new loss's peak extra memory as a multiple of the input's bytes,
    measured as in the main table (a fresh process per case on CPU).
    ``--crossover`` times the two positive-positive passes alone for P = 64 ... 16384.

Usage
    python benchmarks/bench_rank_sort.py [--device auto|cpu|cuda] [--quick] [--cases SUBSTR[,..]]
                                         [--markdown] [--system-malloc]
                                         [--tables main,scale,targets] [--crossover]
"""

import argparse
import gc
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

import rs_detectron2.losses.rank_sort_exact as exact_module
from rs_detectron2.losses import rank_sort_loss
from rs_detectron2.losses.rank_sort_exact import rank_sort_exact
from rs_detectron2.utils.reference import reference_rank_sort

DELTA = 0.5
SEED = 0
REF_BUDGET_S = 60.0  # above this (estimated) total, the reference is timed once
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4  # relative to the max abs gradient
MIB = 1024.0 * 1024.0

REGIMES = {
    "trained": "negatives ~ N(-4,1), positives ~ N(2,1) (few relevant negatives)",
    "untrained": "all logits ~ N(0,1) (nearly every negative relevant)",
}


# ----------------------------------------------------------------------------------------------
# The two losses, both as autograd Functions returning (loss_rank, loss_sort)


class _ReferenceRankSort(torch.autograd.Function):
    """The authors' loop (float32, threshold on negatives) behind the fast loss's autograd API."""

    @staticmethod
    def forward(ctx, logits, targets, delta):
        loss_rank, loss_sort, grad = reference_rank_sort(
            logits, targets, delta, dtype=torch.float32, use_threshold=True
        )
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(loss_sort)
        return loss_rank, loss_sort

    @staticmethod
    def backward(ctx, grad_rank, grad_sort):
        (grad,) = ctx.saved_tensors
        return grad * grad_rank, None, None


def reference_loss(logits, targets, delta=DELTA):
    return _ReferenceRankSort.apply(logits, targets, delta)


def fast_loss(logits, targets, delta=DELTA):
    return rank_sort_loss(logits, targets, delta)


class _ExactRankSort(torch.autograd.Function):
    """``rank_sort_exact`` with a chosen positive-positive pass, behind the same autograd API."""

    @staticmethod
    def forward(ctx, logits, targets, delta, pairs):
        s = logits.detach().reshape(-1)
        y = targets.detach().reshape(-1).to(s.dtype)
        loss_rank, loss_sort, grad = rank_sort_exact(s, y, delta, pairs=pairs)
        ctx.save_for_backward(grad.view(logits.shape))
        loss_sort = loss_sort.to(s.dtype)
        ctx.mark_non_differentiable(loss_sort)
        return loss_rank.to(s.dtype), loss_sort

    @staticmethod
    def backward(ctx, grad_rank, grad_sort):
        (grad,) = ctx.saved_tensors
        return grad * grad_rank, None, None, None


def dense_pass_loss(logits, targets, delta=DELTA):
    """The exact loss with the dense P x P positive-positive pass (the previous method)."""
    return _ExactRankSort.apply(logits, targets, delta, "dense")


def tree_pass_loss(logits, targets, delta=DELTA):
    """The exact loss with the automatic choice (the quality tree above the crossover)."""
    return _ExactRankSort.apply(logits, targets, delta, "auto")


# ----------------------------------------------------------------------------------------------
# Cases and inputs


@dataclass(frozen=True)
class Case:
    head: str  # "dense" or "rcnn"
    regime: str  # "trained" or "untrained"
    num_pos: int
    num: int  # total number of logits
    images: int = 0  # R-CNN only: images x rois x classes
    rois: int = 0
    classes: int = 0

    @property
    def name(self) -> str:
        return f"{self.head}-{self.regime}-P{self.num_pos}"


def all_cases(quick: bool) -> List[Case]:
    if quick:
        return [
            Case("dense", "trained", 200, 200_000),
            Case("dense", "untrained", 200, 200_000),
            Case("rcnn", "untrained", 200, 2 * 1000 * 80, 2, 1000, 80),
        ]
    cases = [
        Case("dense", regime, p, 1_000_000)
        for regime in ("trained", "untrained")
        for p in (50, 200, 1000)
    ]
    cases += [Case("rcnn", "untrained", p, 16 * 1000 * 80, 16, 1000, 80) for p in (500, 1000, 3000)]
    return cases


def _distinct_indices(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct random indices in [0, n) without an n-sized temporary.

    (``randperm(n)`` would lift the RSS high-water mark above the inputs: see _cpu_peak_child.)
    """
    while True:
        idx = torch.randint(0, n, (2 * k + 16,), generator=gen).unique()
        if idx.numel() >= k:
            return idx[torch.randperm(idx.numel(), generator=gen)[:k]]


def make_inputs(case: Case, device: torch.device):
    """Float32 (logits, targets), built in place so that no input-sized temporary exists."""
    gen = torch.Generator().manual_seed(SEED + case.num_pos)
    logits = torch.empty(case.num)
    targets = torch.zeros(case.num)
    if case.head == "dense":
        pos = _distinct_indices(case.num, case.num_pos, gen)
        quality = 1.0 - 0.9 * torch.rand(case.num_pos, generator=gen)  # (0.1, 1]
    else:
        rois = _distinct_indices(case.images * case.rois, case.num_pos, gen)
        cls = torch.randint(0, case.classes, (case.num_pos,), generator=gen)
        pos = rois * case.classes + cls  # one-hot: the other classes of a positive RoI stay 0
        quality = 1.0 - 0.5 * torch.rand(case.num_pos, generator=gen)  # (0.5, 1]
    if case.regime == "trained":
        logits.normal_(-4.0, 1.0, generator=gen)
        logits[pos] = torch.randn(case.num_pos, generator=gen) + 2.0
    else:
        logits.normal_(0.0, 1.0, generator=gen)
    targets[pos] = quality
    if case.head == "rcnn":
        shape = (case.images * case.rois, case.classes)
        logits, targets = logits.view(shape), targets.view(shape)
    return logits.to(device), targets.to(device)


def count_relevant(logits, targets, delta=DELTA) -> int:
    s, y = logits.reshape(-1), targets.reshape(-1)
    threshold = s[y > 0].min() - delta
    return int(((y == 0) & (s >= threshold)).sum())


# ----------------------------------------------------------------------------------------------
# Timing and checking


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_backward(loss_fn: Callable, logits, targets):
    """One forward + backward through autograd; returns (loss_rank, loss_sort, grad)."""
    x = logits.detach().requires_grad_(True)
    loss_rank, loss_sort = loss_fn(x, targets)
    loss_rank.backward()
    return loss_rank.detach(), loss_sort.detach(), x.grad


def timed(loss_fn: Callable, logits, targets, device: torch.device) -> float:
    """Seconds for one forward + backward (inputs are prepared outside the timer)."""
    x = logits.detach().requires_grad_(True)
    _sync(device)
    start = time.perf_counter()
    loss_rank, _ = loss_fn(x, targets)
    loss_rank.backward()
    _sync(device)
    return time.perf_counter() - start


def check_agreement(case: Case, logits, targets, device):
    """Runs both sides once (also the warm-up); returns the reference's time or aborts."""
    _sync(device)
    start = time.perf_counter()
    ref = forward_backward(reference_loss, logits, targets)
    _sync(device)
    ref_seconds = time.perf_counter() - start
    fast = forward_backward(fast_loss, logits, targets)
    problems = []
    for what, r, f in (("loss_rank", ref[0], fast[0]), ("loss_sort", ref[1], fast[1])):
        r, f = float(r), float(f)
        if not abs(f - r) <= LOSS_RTOL * abs(r) + 1e-12:
            problems.append(f"{what}: reference {r:.8g} fast {f:.8g}")
    scale = float(ref[2].abs().max())
    err = float((fast[2].double() - ref[2].double()).abs().max())
    if not err <= GRAD_RTOL * scale:
        problems.append(f"gradient: max abs diff {err:.3g} vs max abs gradient {scale:.3g}")
    status = "MISMATCH" if problems else "ok"
    print(
        f"  check {case.name}: {status} (loss_rank {float(ref[0]):.6f}, loss_sort "
        f"{float(ref[1]):.6f}, grad max diff / max |grad| = {err / max(scale, 1e-30):.1e}); "
        f"reference took {ref_seconds:.2f} s",
        flush=True,
    )
    if problems:
        print("ABORT: fast and reference disagree on " + case.name, file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        sys.exit(1)
    return ref_seconds


def time_both(logits, targets, device, fast_reps: int, ref_reps: int):
    """Interleaved repeats of both sides; returns (reference times, fast times) in seconds."""
    ref_times, fast_times = [], []
    for rep in range(max(fast_reps, ref_reps)):
        if rep < ref_reps:
            ref_times.append(timed(reference_loss, logits, targets, device))
        if rep < fast_reps:
            fast_times.append(timed(fast_loss, logits, targets, device))
    return ref_times, fast_times


# ----------------------------------------------------------------------------------------------
# Peak memory of the fast loss


def _proc_status_kib(field: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (Linux), or None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_kib() -> int:
    """Peak resident set size of this process so far, in KiB.

    ru_maxrss (KiB on Linux) is the portable measure, but on Linux it is not reset by exec: a
    spawned child starts with its parent's RSS at fork time as its ru_maxrss (the kernel keeps the
    old address space's high-water mark). The benchmark's parent holds large inputs, so that
    inherited value would hide the child's whole measurement. VmHWM in /proc/self/status is the
    same high-water mark for this process's own address space only, so it is used where present.
    """
    hwm = _proc_status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_peak_child(case: Case, num_threads: int):
    """Peak extra bytes of one fast forward + backward, measured in this (fresh) process.

    Why RSS: the CPU allocator keeps no peak statistics (torch.cuda.max_memory_allocated has no
    CPU counterpart) and tracemalloc does not see allocations made by ATen's C++ code, so the
    process's peak resident set size is the one measure that sees every byte. It is a high-water
    mark over the whole life of the process (and freed heap memory is reused without showing up),
    hence a fresh process per case, inputs built without input-sized temporaries, and a tiny
    warm-up call first so that one-off allocations (thread pools, kernel caches) are not counted.
    Returns (peak extra bytes, bytes by which an earlier high-water mark exceeded the RSS just
    before the call: up to that much of the call's peak could be hidden under it).
    """
    torch.set_num_threads(num_threads)
    logits, targets = make_inputs(case, torch.device("cpu"))
    tiny_y = torch.zeros(1000)
    tiny_y[::50] = 0.7
    forward_backward(fast_loss, torch.randn(1000), tiny_y)
    gc.collect()
    rss_before = _proc_status_kib("VmRSS")
    peak_before = _peak_rss_kib()
    forward_backward(fast_loss, logits, targets)
    peak_after = _peak_rss_kib()
    hidden_kib = 0 if rss_before is None else max(0, peak_before - rss_before)
    return (peak_after - peak_before) * 1024, hidden_kib * 1024


def peak_extra_bytes(case: Case, logits, targets, device: torch.device):
    """(peak extra bytes of the fast loss, possible under-count in bytes)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        forward_backward(fast_loss, logits, targets)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before, 0
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_cpu_peak_child, (case, torch.get_num_threads()))


# ----------------------------------------------------------------------------------------------
# One case, the table, the summary


@dataclass
class Row:
    case: Case
    num_relevant: int
    ref_ms: float
    ref_reps: int
    fast_ms: float
    fast_reps: int
    peak_mib: float
    peak_x_input: float
    hidden_mib: float

    @property
    def ratio(self) -> float:
        return self.ref_ms / self.fast_ms


def run_case(case: Case, device, fast_reps: int, ref_reps: int) -> Row:
    logits, targets = make_inputs(case, device)
    num_rel = count_relevant(logits, targets)
    print(f"{case.name}: N={case.num}, P={case.num_pos}, relevant negatives={num_rel}", flush=True)
    ref_seconds = check_agreement(case, logits, targets, device)
    if ref_seconds * ref_reps > REF_BUDGET_S:
        print(
            f"  reference would take ~{ref_seconds * ref_reps:.0f} s for {ref_reps} repeats: "
            "capped at 1 repeat",
            flush=True,
        )
        ref_reps = 1
    ref_times, fast_times = time_both(logits, targets, device, fast_reps, ref_reps)
    peak, hidden = peak_extra_bytes(case, logits, targets, device)
    input_bytes = logits.numel() * logits.element_size() + targets.numel() * targets.element_size()
    return Row(
        case=case,
        num_relevant=num_rel,
        ref_ms=1e3 * statistics.median(ref_times),
        ref_reps=len(ref_times),
        fast_ms=1e3 * statistics.median(fast_times),
        fast_reps=len(fast_times),
        peak_mib=peak / MIB,
        peak_x_input=peak / input_bytes,
        hidden_mib=hidden / MIB,
    )


HEADER = [
    "case",
    "N",
    "P",
    "regime",
    "rel. neg.",
    "reference ms",
    "fast ms",
    "ref/fast",
    "fast peak MiB",
    "x input",
]


def _sci(n: int) -> str:
    """1000000 -> '1e6', 1280000 -> '1.28e6'."""
    exponent = len(str(n)) - 1
    return f"{n / 10**exponent:g}e{exponent}"


def _cells(row: Row) -> List[str]:
    ref = f"{row.ref_ms:.1f}" + ("" if row.ref_reps > 1 else " (1 rep)")
    return [
        "R-CNN" if row.case.head == "rcnn" else "dense",
        _sci(row.case.num),
        str(row.case.num_pos),
        row.case.regime,
        str(row.num_relevant),
        ref,
        f"{row.fast_ms:.1f}",
        f"{row.ratio:.1f}",
        f"{row.peak_mib:.1f}" + ("*" if row.hidden_mib > 1 else ""),
        f"{row.peak_x_input:.2f}",
    ]


def print_table(rows: List[Row], markdown: bool):
    table = [HEADER] + [_cells(r) for r in rows]
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "|".join(["---"] * 4 + ["---:"] * (len(HEADER) - 4)) + "|")
        for cells in table[1:]:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(r[c]) for r in table) for c in range(len(HEADER))]
    for i, cells in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_summary(rows: List[Row]):
    if not rows:
        print("no case selected")
        return
    ratios = [r.ratio for r in rows]
    print(f"ratio reference/fast: min {min(ratios):.1f}x, max {max(ratios):.1f}x")
    big = [
        r
        for r in rows
        if r.case.head == "dense" and r.case.num == 1_000_000 and r.case.num_pos == 1000
    ]
    if big:
        holds = all(r.ratio >= 10 for r in big)
        detail = ", ".join(f"{r.case.regime} {r.ratio:.1f}x" for r in big)
        print(f'"fast >= 10x at N=1e6, P=1000": {"holds" if holds else "DOES NOT hold"} ({detail})')
    else:
        print('"fast >= 10x at N=1e6, P=1000": not measured (case not selected)')
    slower = [r.case.name for r in rows if r.ratio < 1]
    print(f'"never slower": {"holds" if not slower else "DOES NOT hold: " + ", ".join(slower)}')
    if any(r.hidden_mib > 1 for r in rows):
        print("* peak may be under-counted: an earlier high-water mark sat above the RSS before it")


# ----------------------------------------------------------------------------------------------
# The scale table and the target rows (issue 13): loop, dense pass, tree pass side by side

LOOP_BUDGET_S = [60.0]  # the authors' loop is run only where it finishes within this (s)
DENSE_MAX_POS = 20_000  # above this the dense P x P pass takes minutes: not run
SCALE_NUMS = (100_000, 1_000_000, 10_000_000)
SCALE_POS = (100, 1_000, 10_000, 100_000)


def scale_cases() -> List[Case]:
    """N x P grid, trained-like, P < N (P = N would leave no negatives)."""
    return [Case("dense", "trained", p, n) for n in SCALE_NUMS for p in SCALE_POS if p < n]


def target_cases() -> List[Case]:
    """The rows with a speed target in issue 13."""
    return [
        Case("dense", "untrained", 1000, 1_000_000),
        Case("dense", "trained", 1000, 1_000_000),
        Case("rcnn", "trained", 3000, 16 * 1000 * 80, 16, 1000, 80),
        Case("dense", "trained", 5000, 200_000),
        Case("dense", "trained", 20000, 200_000),
        Case("dense", "trained", 100_000, 1_000_000),
    ]


def _loop_child(case: Case, device: str, num_threads: int, reps: int, tune_malloc: bool):
    """The authors' loop on ``case`` in a fresh process: median seconds of ``reps`` runs."""
    torch.set_num_threads(num_threads)
    if tune_malloc:
        tune_glibc_malloc()
    dev = torch.device(device)
    logits, targets = make_inputs(case, dev)
    times = [timed(reference_loss, logits, targets, dev) for _ in range(reps)]
    return statistics.median(times)


def loop_estimate(logits, targets, device) -> float:
    """Rough seconds of the loop: 32 of its positives (the others ignored) scaled to P.

    Loops estimated at more than 3x the budget are not started (the estimate can be off by 2x
    either way: fixed costs are scaled too, the P-long vectors are not)."""
    y = targets.reshape(-1)
    pos = torch.nonzero(y > 0).squeeze(1)
    keep = 32
    if pos.numel() <= keep:
        return 0.0
    sub = y.clone()
    sub[pos[keep:]] = -1.0
    seconds = timed(reference_loss, logits.reshape(-1), sub, device)
    return seconds / keep * pos.numel()


_TUNE_MALLOC = [True]  # the children tune malloc as the parent does (False: --system-malloc)


def time_loop(case: Case, logits, targets, device) -> Optional[float]:
    """Median seconds of the authors' loop, or None if it does not finish within the budget."""
    if loop_estimate(logits, targets, device) > 3 * LOOP_BUDGET_S[0]:
        return None
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        args = (case, device.type, torch.get_num_threads())
        first = pool.apply_async(_loop_child, (*args, 1, _TUNE_MALLOC[0]))
        try:
            seconds = first.get(timeout=LOOP_BUDGET_S[0] + 30)  # + input generation and start-up
        except multiprocessing.TimeoutError:
            pool.terminate()
            return None
        if seconds < 5.0:
            seconds = pool.apply(_loop_child, (*args, 3, _TUNE_MALLOC[0]))
    return seconds


@dataclass
class ScaleRow:
    case: Case
    num_relevant: int
    loop_ms: Optional[float]
    dense_ms: Optional[float]
    tree_ms: float
    method: str  # the pass "auto" chose
    max_rel_diff: float  # tree vs dense (or vs the loop where dense was not run), gradient
    peak_x_input: float  # peak extra memory of rank_sort_loss / bytes of logits + targets


def _median_ms(loss_fn, logits, targets, device, budget_s: float = 20.0) -> float:
    first = timed(loss_fn, logits, targets, device)  # warm-up, also sizes the repeats
    reps = max(1, min(5, int(budget_s / max(first, 1e-6))))
    return 1e3 * statistics.median(timed(loss_fn, logits, targets, device) for _ in range(reps))


def run_scale_case(case: Case, device) -> ScaleRow:
    logits, targets = make_inputs(case, device)
    num_rel = count_relevant(logits, targets)
    print(f"{case.name} N={case.num}: relevant negatives={num_rel}", flush=True)
    tree = forward_backward(tree_pass_loss, logits, targets)
    reference = None
    dense_ms = None
    if case.num_pos <= DENSE_MAX_POS:
        reference = forward_backward(dense_pass_loss, logits, targets)
    scale = float(tree[2].abs().max())
    diff = 0.0 if reference is None else float((tree[2] - reference[2]).abs().max()) / scale
    if reference is not None and not diff <= GRAD_RTOL:
        sys.exit(f"ABORT: tree and dense passes disagree on {case.name}: {diff:.3g}")
    tree_ms = _median_ms(tree_pass_loss, logits, targets, device)
    if reference is not None:
        dense_ms = _median_ms(dense_pass_loss, logits, targets, device)
    loop_s = time_loop(case, logits, targets, device)
    crossover = exact_module._TREE_MIN_POS.get(device.type, exact_module._TREE_MIN_POS["cuda"])
    method = "tree" if case.num_pos >= crossover else "dense"
    peak, _ = peak_extra_bytes(case, logits, targets, device)
    input_bytes = logits.numel() * logits.element_size() + targets.numel() * targets.element_size()
    row = ScaleRow(
        case,
        num_rel,
        None if loop_s is None else 1e3 * loop_s,
        dense_ms,
        tree_ms,
        method,
        diff,
        peak / input_bytes,
    )
    print(
        f"  loop {_ms(row.loop_ms)} dense {_ms(dense_ms)} new {tree_ms:.1f} ms, "
        f"peak {row.peak_x_input:.2f}x input",
        flush=True,
    )
    return row


def _ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return "-" if a is None or b is None else f"{a / b:.1f}x"


SCALE_HEADER = [
    "input",
    "N",
    "P",
    "rel. neg.",
    "loop ms",
    "dense pass ms",
    "new ms",
    "pass used",
    "loop / new",
    "dense / new",
    "peak x input",
]


def _scale_cells(row: ScaleRow) -> List[str]:
    case = row.case
    if case.head == "rcnn":
        what = f"R-CNN {case.images}x{case.rois}x{case.classes}, {case.regime}"
    else:
        what = f"dense, {case.regime}"
    loop = _ms(row.loop_ms) if row.loop_ms is not None else f"> {LOOP_BUDGET_S[0]:.0f} s"
    dense = _ms(row.dense_ms) if row.dense_ms is not None else "not run"
    return [
        what,
        _sci(case.num),
        str(case.num_pos),
        str(row.num_relevant),
        loop,
        dense,
        _ms(row.tree_ms),
        row.method,
        _ratio(row.loop_ms, row.tree_ms),
        _ratio(row.dense_ms, row.tree_ms),
        f"{row.peak_x_input:.2f}",
    ]


def print_scale_table(rows: List[ScaleRow], markdown: bool):
    _print_grid(SCALE_HEADER, [_scale_cells(r) for r in rows], markdown, left=1)


def _print_grid(header, body, markdown: bool, left: int):
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|")
        for cells in body:
            print("| " + " | ".join(cells) + " |")
        return
    table = [header] + body
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    for i, cells in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


TARGETS = {  # (N, P, regime) -> loop / new ratio to reach, or a time limit in ms (issue 13)
    (1_000_000, 1000, "untrained", "dense"): ("ratio", 8.0),
    (1_000_000, 1000, "trained", "dense"): ("ratio", 14.0),
    (1_280_000, 3000, "trained", "rcnn"): ("ratio", 16.0),
    (200_000, 20000, "trained", "dense"): ("ratio", 18.0),
    (1_000_000, 100_000, "trained", "dense"): ("ms", 1000.0),
}


def print_target_summary(rows: List[ScaleRow]):
    for row in rows:
        c = row.case
        target = TARGETS.get((c.num, c.num_pos, c.regime, c.head))
        if target is None:
            continue
        kind, value = target
        if kind == "ratio":
            got = None if row.loop_ms is None else row.loop_ms / row.tree_ms
            ok = got is not None and got >= value
            shown = "loop not run" if got is None else f"{got:.1f}x"
            print(
                f"target {c.name} N={_sci(c.num)}: loop / new >= {value:g}x: "
                f"{'holds' if ok else 'DOES NOT hold'} ({shown})"
            )
        else:
            ok = row.tree_ms < value
            print(
                f"target {c.name} N={_sci(c.num)}: new < {value:g} ms: "
                f"{'holds' if ok else 'DOES NOT hold'} ({row.tree_ms:.0f} ms)"
            )


# The passes' chunks grow with the input (rank_sort_exact's budget, in bytes); the crossover is
# timed with the budget of a 1e6-entry input.
CROSSOVER_BUDGET = 1_000_000


def _time_pass(p, y, method: str, device) -> float:
    _sync(device)
    start = time.perf_counter()
    exact_module._positive_pairs(p, y, DELTA, method, budget=CROSSOVER_BUDGET)
    _sync(device)
    return time.perf_counter() - start


def print_crossover(device, markdown: bool):
    """Times of the two positive-positive passes alone (forward only), to place the crossover
    (the tree with the leaf-chunk budget of a 1e6-entry input)."""
    gen = torch.Generator().manual_seed(SEED)
    body = []
    for log_p in range(6, 15):
        num_pos = 1 << log_p
        p = torch.randn(num_pos, generator=gen, dtype=torch.float64).sort().values.to(device)
        y = (1.0 - 0.9 * torch.rand(num_pos, generator=gen, dtype=torch.float64)).to(device)
        cells = [str(num_pos)]
        for method in ("dense", "tree"):
            _time_pass(p, y, method, device)  # warm-up
            times = [_time_pass(p, y, method, device) for _ in range(7)]
            cells.append(f"{1e3 * statistics.median(times):.2f}")
        body.append(cells)
    _print_grid(["P", "dense pass ms", "tree pass ms"], body, markdown, left=0)


# ----------------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def tune_glibc_malloc() -> str:
    """Fixes glibc's mmap and trim thresholds so that freed buffers are reused, not re-faulted.

    With glibc's default (dynamic) thresholds, whether a freed multi-MiB buffer is returned to the
    OS depends on the heap's history. When it is, every later allocation of that size page-faults
    again: the reference loop (several N-sized temporaries per positive) was measured at 1 to
    10 ms per positive at N = 1e6 depending only on this, with up to ~6000 page faults per
    positive. Fixing both thresholds (as a caching allocator does on a GPU) removes that noise and
    favours neither side. Returns a line for the header.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1  # 32 MiB is glibc's maximum
        ok = ok and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    if ok:
        return "malloc: glibc mmap/trim thresholds fixed at 32 MiB / 1 GiB (see tune_glibc_malloc)"
    return "malloc: left as is (not glibc)"


class Contention:
    """How much CPU other processes used while this benchmark ran (Linux /proc/stat).

    The wall clock is only meaningful when the benchmark has the cores to itself, so the busy time
    of the whole machine minus this process's own CPU time (and its reaped children's) is
    reported, as a share of all cores over the elapsed time.
    """

    def __init__(self):
        self.cores = os.cpu_count() or 1
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        return time.perf_counter(), busy, own

    def others_share(self, since=None) -> Optional[float]:
        since = since or self.start
        now = self._sample()
        if since is None or now is None or now[0] <= since[0]:
            return None
        others = (now[1] - since[1]) - (now[2] - since[2])
        return max(0.0, others) / ((now[0] - since[0]) * self.cores)

    def line(self, when: str, since=None) -> str:
        share = self.others_share(since)
        if share is None:
            return f"CPU used by other processes {when}: unavailable"
        line = f"CPU used by other processes {when}: {100 * share:.0f}% of {self.cores} cores"
        if share > 0.1:
            line += " -- WARNING: the cores were shared, timings are unreliable"
        return line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="small cases, few repeats (make demo)")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--system-malloc", action="store_true", help="leave glibc's malloc thresholds as they are"
    )
    parser.add_argument(
        "--tables",
        default="main",
        help="comma-separated: main (loop vs rank_sort_loss, with peak memory), scale (N x P grid: "
        "loop, dense pass, new), targets (issue 13's target rows, same columns as scale)",
    )
    parser.add_argument(
        "--crossover", action="store_true", help="time the two positive-positive passes alone"
    )
    parser.add_argument(
        "--loop-budget", type=float, default=60.0, help="seconds the authors' loop may take"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    fast_reps, ref_reps = (5, 3) if args.quick else (7, 3)
    cases = all_cases(args.quick)
    if args.cases:
        wanted = [w for w in args.cases.split(",") if w]
        cases = [c for c in cases if any(w in c.name for w in wanted)]

    print(
        f"torch {torch.__version__}, device {device} ({device_name(device)}), "
        f"{torch.get_num_threads()} threads"
    )
    contention = Contention()
    time.sleep(1.0)
    print(contention.line("in the second before the start"))
    print("malloc: left as is (--system-malloc)" if args.system_malloc else tune_glibc_malloc())
    print(
        f"reference: rs_detectron2.utils.reference, float32, use_threshold=True (the authors' "
        f"code: "
        f"float32 buffers, loop over positives, only relevant negatives); delta={DELTA}"
    )
    print("fast: rs_detectron2.losses.rank_sort_loss; both timed as forward+backward via autograd")
    for regime, text in REGIMES.items():
        print(f"regime {regime}: {text}")
    print("dense targets of positives ~ U(0.1,1]; R-CNN: one-hot over 80 classes, IoU ~ U(0.5,1]")
    print(
        f"median of {fast_reps} (fast) / {ref_reps} (reference) repeats after one warm-up "
        f"(the agreement check); reference capped at 1 repeat if it would take > "
        f"{REF_BUDGET_S:.0f} s"
    )
    peak_how = (
        "CUDA max_memory_allocated"
        if device.type == "cuda"
        else "peak RSS growth in a fresh process"
    )
    print(
        f"fast peak = extra memory of one forward+backward ({peak_how}); x input = "
        "multiple of logits + targets bytes",
        flush=True,
    )

    start = time.perf_counter()
    run_start = Contention._sample()
    _TUNE_MALLOC[0] = not args.system_malloc
    LOOP_BUDGET_S[0] = args.loop_budget
    tables = [name for name in args.tables.split(",") if name]
    if args.crossover:
        print()
        print("positive-positive passes alone (forward, median of 7):")
        print_crossover(device, args.markdown)
    if "main" in tables:
        rows = [run_case(case, device, fast_reps, ref_reps) for case in cases]
        print()
        print_table(rows, args.markdown)
        print()
        print_summary(rows)
    for name, make in (("scale", scale_cases), ("targets", target_cases)):
        if name not in tables:
            continue
        print(
            f"\n{name} table: loop = the authors' loop (run in a fresh process, only where it "
            f"finishes within {LOOP_BUDGET_S[0]:.0f} s); dense pass = "
            "rank_sort_exact(pairs='dense'); new = rank_sort_exact(pairs='auto'); medians, "
            "forward + backward",
            flush=True,
        )
        scale_rows = [run_scale_case(case, device) for case in make()]
        print()
        print_scale_table(scale_rows, args.markdown)
        if name == "targets":
            print()
            print_target_summary(scale_rows)
    print()
    print(contention.line("during the run", since=run_start))
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
