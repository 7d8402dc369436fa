"""Benchmark: fast Rank & Sort loss vs the authors' loop over positives.

What is measured
    For each case (a flat pool of logits with IoU-like targets), the wall-clock time of one
    forward + backward through autograd of

    * ``reference``: ``rs_detectron2.utils.reference.reference_rank_sort`` in float32 with
      ``use_threshold=True`` -- the authors' algorithm: a Python loop over positives, float32
      buffers, only the relevant negatives (s >= min positive logit - delta), wrapped in an
      autograd Function whose backward returns the saved gradient times the upstream gradient of
      ``loss_rank``, the same contract as the fast loss;
    * ``fast``: ``rs_detectron2.losses.rank_sort_loss``.

    Both run on the same inputs, in the same process, repeats interleaved, medians reported.
    Before timing, each case is checked once: loss values must agree to 1e-4 relative and
    gradients to 1e-4 of the largest, otherwise the benchmark aborts (the check is also the
    warm-up). Cases, inputs, timing, peak memory and noise control: ``benchmarks/harness.py``
    (``--system-malloc`` leaves glibc's malloc as it is).

Cases (delta = 0.5)
    dense head: N = 1e6 logits, P = 50 / 200 / 1000 positives, "trained" and "untrained";
    targets of positives ~ U(0.1, 1]. R-CNN head: 16 images x 1000 RoIs x 80 classes, P = 500 /
    1000 / 3000 positive RoIs, one-hot over classes (IoU target ~ U(0.5, 1]), untrained.

Scale table and target rows (``--tables scale,targets``)
    Trained-like dense inputs for N in {1e5, 1e6, 1e7} x P in {1e2, 1e3, 1e4, 1e5} (P < N), and the
    rows that carry a speed target. Three columns side by side in one run: the authors' loop
    (each in a fresh process, median of 3 runs, or 1 run above 5 s; not started when an estimate
    from 32 of its positives exceeds 3x the loop budget, stopped after it), the exact loss with the
    dense P x P positive-positive pass (``pairs="dense"``, not run above P = 20000) and with the
    automatic choice (``pairs="auto"``: the quality tree above the crossover), checked against each
    other first. The last column is the loss's peak extra memory as a multiple of the input's
    bytes. ``--crossover`` times the two positive-positive passes alone for P = 64 ... 16384.

Usage
    python benchmarks/bench_rank_sort.py [--device auto|cpu|cuda] [--quick] [--cases SUBSTR[,..]]
                                         [--markdown] [--system-malloc] [--loop-budget S]
                                         [--threads T]
                                         [--tables main,scale,targets] [--crossover]
"""

import argparse
import functools
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import harness as H
import torch

from rs_detectron2.losses import rank_sort_loss
from rs_detectron2.losses.identity_update import ExactResult, identity_update
from rs_detectron2.losses.positive_pairs import pair_method, positive_pairs
from rs_detectron2.losses.rank_sort_exact import rank_sort_exact
from rs_detectron2.utils.reference import reference_rank_sort

DELTA = 0.5
REF_BUDGET_S = 60.0  # above this (estimated) total, the reference is timed once
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4  # relative to the max abs gradient


# ----------------------------------------------------------------------------------------------
# The losses, all as autograd Functions returning (loss_rank, loss_sort)


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


def _exact(s, y, pairs):
    loss_rank, loss_sort, grad = rank_sort_exact(s, y, DELTA, pairs=pairs)
    return ExactResult((loss_rank, loss_sort), grad)


def dense_pass_loss(logits, targets):
    """The exact loss with the dense P x P positive-positive pass forced."""
    exact = functools.partial(_exact, pairs="dense")
    return identity_update(exact, logits, targets, name="rank_sort_loss")


def tree_pass_loss(logits, targets):
    """The exact loss with the automatic choice (the quality tree above the crossover)."""
    exact = functools.partial(_exact, pairs="auto")
    return identity_update(exact, logits, targets, name="rank_sort_loss")


def forward_backward(loss_fn: Callable, logits, targets):
    """One forward + backward through autograd; returns (loss_rank, loss_sort, grad)."""
    x = logits.detach().requires_grad_(True)
    loss_rank, loss_sort = loss_fn(x, targets)
    loss_rank.backward()
    return loss_rank.detach(), loss_sort.detach(), x.grad


def call(loss_fn: Callable, logits, targets) -> Callable[[], object]:
    """A zero-argument forward + backward for the harness's timers."""
    return functools.partial(forward_backward, loss_fn, logits, targets)


def make_inputs(case: H.Case, device):
    logits, targets, _ = H.make_inputs(case, device)
    return logits, targets


# ----------------------------------------------------------------------------------------------
# The main table: loop vs fast, with the fast loss's peak memory


def check_agreement(case: H.Case, logits, targets, device) -> float:
    """Runs both sides once (also the warm-up); returns the reference's time or aborts."""
    start = time.perf_counter()
    H.sync(device)
    ref = forward_backward(reference_loss, logits, targets)
    H.sync(device)
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
    print(
        f"  check {case.name}: {'MISMATCH' if problems else 'ok'} (loss_rank {float(ref[0]):.6f}, "
        f"loss_sort {float(ref[1]):.6f}, grad max diff / max |grad| = "
        f"{err / max(scale, 1e-30):.1e}); reference took {ref_seconds:.2f} s",
        flush=True,
    )
    if problems:
        print("ABORT: fast and reference disagree on " + case.name, file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        sys.exit(1)
    return ref_seconds


def _cpu_peak_child(case: H.Case, num_threads: int):
    """(peak, hidden) extra bytes of one fast forward + backward in this fresh process, after a
    tiny warm-up call (thread pools and kernel caches are not counted)."""
    torch.set_num_threads(num_threads)
    logits, targets = make_inputs(case, torch.device("cpu"))
    tiny_y = torch.zeros(1000)
    tiny_y[::50] = 0.7
    forward_backward(fast_loss, torch.randn(1000), tiny_y)
    return H.rss_peak_of(call(fast_loss, logits, targets))


def peak_extra_bytes(case: H.Case, logits, targets, device):
    """(peak extra bytes of the fast loss, possible under-count in bytes)."""
    if device.type == "cuda":
        return H.cuda_peak_of(call(fast_loss, logits, targets), device), 0
    return H.in_fresh_process(_cpu_peak_child, case, torch.get_num_threads())


@dataclass
class Row:
    case: H.Case
    num_relevant: int
    ref_ms: float
    ref_reps: int
    fast_ms: float
    peak_mib: float
    peak_x_input: float
    hidden_mib: float

    @property
    def ratio(self) -> float:
        return self.ref_ms / self.fast_ms


def input_bytes(logits, targets) -> int:
    return logits.numel() * logits.element_size() + targets.numel() * targets.element_size()


def run_case(case: H.Case, device, fast_reps: int, ref_reps: int) -> Row:
    logits, targets = make_inputs(case, device)
    num_rel = H.count_relevant(logits, targets, DELTA)
    print(f"{case.name}: N={case.num}, P={case.num_pos}, relevant negatives={num_rel}", flush=True)
    ref_seconds = check_agreement(case, logits, targets, device)
    if ref_seconds * ref_reps > REF_BUDGET_S:
        print(f"  reference would take ~{ref_seconds * ref_reps:.0f} s: 1 repeat", flush=True)
        ref_reps = 1
    times = H.interleaved(
        {"ref": call(reference_loss, logits, targets), "fast": call(fast_loss, logits, targets)},
        {"ref": ref_reps, "fast": fast_reps},
        device,
    )
    peak, hidden = peak_extra_bytes(case, logits, targets, device)
    return Row(
        case=case,
        num_relevant=num_rel,
        ref_ms=1e3 * statistics.median(times["ref"]),
        ref_reps=len(times["ref"]),
        fast_ms=1e3 * statistics.median(times["fast"]),
        peak_mib=peak / H.MIB,
        peak_x_input=peak / input_bytes(logits, targets),
        hidden_mib=hidden / H.MIB,
    )


HEADER = ["case", "N", "P", "regime", "rel. neg.", "reference ms", "fast ms", "ref/fast"]
HEADER += ["fast peak MiB", "x input"]


def _cells(row: Row) -> List[str]:
    return [
        "R-CNN" if row.case.head == "rcnn" else "dense",
        H.sci(row.case.num),
        str(row.case.num_pos),
        row.case.regime,
        str(row.num_relevant),
        f"{row.ref_ms:.1f}" + ("" if row.ref_reps > 1 else " (1 rep)"),
        f"{row.fast_ms:.1f}",
        f"{row.ratio:.1f}",
        f"{row.peak_mib:.1f}" + ("*" if row.hidden_mib > 1 else ""),
        f"{row.peak_x_input:.2f}",
    ]


def print_summary(rows: List[Row]):
    if not rows:
        print("no case selected")
        return
    ratios = [r.ratio for r in rows]
    print(f"ratio reference/fast: min {min(ratios):.1f}x, max {max(ratios):.1f}x")
    big = [
        r
        for r in rows
        if r.case.head == "dense" and (r.case.num, r.case.num_pos) == (1_000_000, 1000)
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
# The scale table and the target rows: loop, dense pass, automatic pass side by side

LOOP_BUDGET_S = [60.0]  # the authors' loop is run only where it finishes within this (s)
TUNE_MALLOC = [True]  # the loop's children tune malloc as the parent does (False: --system-malloc)
DENSE_MAX_POS = 20_000  # above this the dense P x P pass takes minutes: not run
SCALE_NUMS = (100_000, 1_000_000, 10_000_000)
SCALE_POS = (100, 1_000, 10_000, 100_000)


def scale_cases() -> List[H.Case]:
    """N x P grid, trained-like, P < N (P = N would leave no negatives)."""
    return [H.dense("trained", p, n) for n in SCALE_NUMS for p in SCALE_POS if p < n]


# (N, P, regime, head) -> the loop / new ratio to reach, or a time limit in ms
TARGETS = {
    (1_000_000, 1000, "untrained", "dense"): ("ratio", 8.0),
    (1_000_000, 1000, "trained", "dense"): ("ratio", 14.0),
    (1_280_000, 3000, "trained", "rcnn"): ("ratio", 16.0),
    (200_000, 20000, "trained", "dense"): ("ratio", 18.0),
    (1_000_000, 100_000, "trained", "dense"): ("ms", 1000.0),
}


def target_cases() -> List[H.Case]:
    """The rows with a speed target (``TARGETS``), and one more at P = 5000."""
    return [
        H.dense("untrained", 1000, 1_000_000),
        H.dense("trained", 1000, 1_000_000),
        H.rcnn("trained", 3000),
        H.dense("trained", 5000, 200_000),
        H.dense("trained", 20000, 200_000),
        H.dense("trained", 100_000, 1_000_000),
    ]


def _loop_child(case: H.Case, device: str, num_threads: int, reps: int, tune_malloc: bool):
    """The authors' loop on ``case`` in a fresh process: median seconds of ``reps`` runs."""
    torch.set_num_threads(num_threads)
    if tune_malloc:
        H.tune_glibc_malloc()
    logits, targets = make_inputs(case, torch.device(device))
    return statistics.median(
        H.timed(call(reference_loss, logits, targets), device) for _ in range(reps)
    )


def loop_estimate(logits, targets, device) -> float:
    """Rough seconds of the loop: 32 of its positives (the others ignored) scaled to P (can be off
    by 2x either way: fixed costs are scaled too, the P-long vectors are not)."""
    y = targets.reshape(-1)
    pos = torch.nonzero(y > 0).squeeze(1)
    keep = 32
    if pos.numel() <= keep:
        return 0.0
    sub = y.clone()
    sub[pos[keep:]] = -1.0
    seconds = H.timed(call(reference_loss, logits.reshape(-1), sub), device)
    return seconds / keep * pos.numel()


def time_loop(case: H.Case, logits, targets, device) -> Optional[float]:
    """Median seconds of the authors' loop, or None if it does not finish within the budget."""
    if loop_estimate(logits, targets, device) > 3 * LOOP_BUDGET_S[0]:
        return None
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        args = (case, device.type, torch.get_num_threads())
        first = pool.apply_async(_loop_child, (*args, 1, TUNE_MALLOC[0]))
        try:
            seconds = first.get(timeout=LOOP_BUDGET_S[0] + 30)  # + input generation and start-up
        except multiprocessing.TimeoutError:
            pool.terminate()
            return None
        if seconds < 5.0:
            seconds = pool.apply(_loop_child, (*args, 3, TUNE_MALLOC[0]))
    return seconds


@dataclass
class ScaleRow:
    case: H.Case
    num_relevant: int
    loop_ms: Optional[float]
    dense_ms: Optional[float]
    tree_ms: float
    method: str  # the pass "auto" chose
    peak_x_input: float  # peak extra memory of rank_sort_loss / bytes of logits + targets


def _median_ms(loss_fn, logits, targets, device, budget_s: float = 20.0) -> float:
    fn = call(loss_fn, logits, targets)
    first = H.timed(fn, device)  # warm-up, also sizes the repeats
    reps = max(1, min(5, int(budget_s / max(first, 1e-6))))
    return 1e3 * statistics.median(H.timed(fn, device) for _ in range(reps))


def run_scale_case(case: H.Case, device) -> ScaleRow:
    logits, targets = make_inputs(case, device)
    num_rel = H.count_relevant(logits, targets, DELTA)
    print(f"{case.name} N={case.num}: relevant negatives={num_rel}", flush=True)
    tree = forward_backward(tree_pass_loss, logits, targets)
    dense_ms = None
    if case.num_pos <= DENSE_MAX_POS:
        dense = forward_backward(dense_pass_loss, logits, targets)
        diff = float((tree[2] - dense[2]).abs().max()) / float(tree[2].abs().max())
        if not diff <= GRAD_RTOL:
            sys.exit(f"ABORT: tree and dense passes disagree on {case.name}: {diff:.3g}")
    tree_ms = _median_ms(tree_pass_loss, logits, targets, device)
    if case.num_pos <= DENSE_MAX_POS:
        dense_ms = _median_ms(dense_pass_loss, logits, targets, device)
    loop_s = time_loop(case, logits, targets, device)
    peak, _ = peak_extra_bytes(case, logits, targets, device)
    row = ScaleRow(
        case,
        num_rel,
        None if loop_s is None else 1e3 * loop_s,
        dense_ms,
        tree_ms,
        pair_method(case.num_pos, device),
        peak / input_bytes(logits, targets),
    )
    print(
        f"  loop {H.ms(row.loop_ms)} dense {H.ms(dense_ms)} new {tree_ms:.1f} ms, "
        f"peak {row.peak_x_input:.2f}x input",
        flush=True,
    )
    return row


SCALE_HEADER = ["input", "N", "P", "rel. neg.", "loop ms", "dense pass ms", "new ms", "pass used"]
SCALE_HEADER += ["loop / new", "dense / new", "peak x input"]


def _scale_cells(row: ScaleRow) -> List[str]:
    case = row.case
    return [
        case.describe(),
        H.sci(case.num),
        str(case.num_pos),
        str(row.num_relevant),
        H.ms(row.loop_ms) if row.loop_ms is not None else f"> {LOOP_BUDGET_S[0]:.0f} s",
        H.ms(row.dense_ms) if row.dense_ms is not None else "not run",
        H.ms(row.tree_ms),
        row.method,
        H.ratio(row.loop_ms, row.tree_ms),
        H.ratio(row.dense_ms, row.tree_ms),
        f"{row.peak_x_input:.2f}",
    ]


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
                f"target {c.name} N={H.sci(c.num)}: loop / new >= {value:g}x: "
                f"{'holds' if ok else 'DOES NOT hold'} ({shown})"
            )
        else:
            ok = row.tree_ms < value
            print(
                f"target {c.name} N={H.sci(c.num)}: new < {value:g} ms: "
                f"{'holds' if ok else 'DOES NOT hold'} ({row.tree_ms:.0f} ms)"
            )


# The passes' chunks grow with the input (a budget in bytes); the crossover is timed with the
# budget of a 1e6-entry input.
CROSSOVER_BUDGET = 1_000_000


def print_crossover(device, markdown: bool):
    """Times of the two positive-positive passes alone (forward only), to place the crossover."""
    gen = torch.Generator().manual_seed(H.SEED)
    body = []
    for log_p in range(6, 15):
        num_pos = 1 << log_p
        p = torch.randn(num_pos, generator=gen, dtype=torch.float64).sort().values.to(device)
        y = (1.0 - 0.9 * torch.rand(num_pos, generator=gen, dtype=torch.float64)).to(device)
        cells = [str(num_pos)]
        for method in ("dense", "tree"):
            run = functools.partial(positive_pairs, p, y, DELTA, method, CROSSOVER_BUDGET)
            H.timed(run, device)  # warm-up
            cells.append(f"{1e3 * statistics.median(H.timed(run, device) for _ in range(7)):.2f}")
        body.append(cells)
    H.print_grid(["P", "dense pass ms", "tree pass ms"], body, markdown, left=0)


# ----------------------------------------------------------------------------------------------


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
        "loop, dense pass, new), targets (the rows with a speed target, same columns as scale)",
    )
    parser.add_argument(
        "--crossover", action="store_true", help="time the two positive-positive passes alone"
    )
    parser.add_argument(
        "--loop-budget", type=float, default=60.0, help="seconds the authors' loop may take"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; 1 on a loaded machine, where OpenMP's "
        "spin-waiting otherwise measures the neighbours)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    fast_reps, ref_reps = (5, 3) if args.quick else (7, 3)
    cases = H.select(H.standard_cases(args.quick), args.cases)

    print(H.machine_line(device))
    contention = H.Contention()
    time.sleep(1.0)
    print(contention.line("in the second before the start"))
    print("malloc: left as is (--system-malloc)" if args.system_malloc else H.tune_glibc_malloc())
    print(
        "reference: rs_detectron2.utils.reference, float32, use_threshold=True (the authors' "
        f"algorithm: float32 buffers, loop over positives, only relevant negatives); delta={DELTA}"
    )
    print("fast: rs_detectron2.losses.rank_sort_loss; both timed as forward+backward via autograd")
    for regime, text in H.REGIMES.items():
        print(f"regime {regime}: {text}")
    print("dense targets of positives ~ U(0.1,1]; R-CNN: one-hot over 80 classes, IoU ~ U(0.5,1]")
    print(
        f"median of {fast_reps} (fast) / {ref_reps} (reference) repeats after one warm-up "
        f"(the agreement check); reference capped at 1 repeat if it would take > "
        f"{REF_BUDGET_S:.0f} s"
    )
    peak_how = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS growth"
    print(
        f"fast peak = extra memory of one forward+backward ({peak_how}, a fresh process per case "
        "on CPU); x input = multiple of logits + targets bytes",
        flush=True,
    )

    start = time.perf_counter()
    run_start = H.Contention.sample()
    TUNE_MALLOC[0] = not args.system_malloc
    LOOP_BUDGET_S[0] = args.loop_budget
    tables = [name for name in args.tables.split(",") if name]
    if args.crossover:
        print("\npositive-positive passes alone (forward, median of 7):")
        print_crossover(device, args.markdown)
    if "main" in tables:
        rows = [run_case(case, device, fast_reps, ref_reps) for case in cases]
        print()
        H.print_grid(HEADER, [_cells(r) for r in rows], args.markdown, left=4)
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
        H.print_grid(SCALE_HEADER, [_scale_cells(r) for r in scale_rows], args.markdown, left=1)
        if name == "targets":
            print()
            print_target_summary(scale_rows)
    print()
    print(contention.line("during the run", since=run_start))
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
