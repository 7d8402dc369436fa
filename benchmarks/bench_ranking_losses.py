"""Benchmark: exact loop-free AP Loss and aLRP Loss vs the authors' loop over positives.

What is measured
    For each case (a flat pool of logits with binary positives), the wall-clock time of one
    forward + backward through autograd of

    * ``loop``: the authors' algorithm (AP-Loss, Chen et al. 2019; aLRP Loss, Oksuz et al. 2020,
      as described in their papers and public code): a Python loop over the positives in ascending
      logit order, float32 buffers, only the relevant negatives (s >= min positive logit - delta),
      one or two host synchronisations per positive (the ``if`` tests on 0-dim tensors); the aLRP
      localisation component sorted and cumulated as the authors' head does. Wrapped in an
      autograd Function that returns the saved gradient, the same contract as the fast losses;
    * ``fast``: ``rs_detectron2.losses.ap_loss`` / ``alrp_loss``.

    Both run in the same process on the same inputs, repeats interleaved, the median reported
    (the machine is shared: the load average before and after is printed). Before timing, each
    case is checked once: values agree to 1e-4 relative and gradients to 1e-4 of the largest,
    otherwise the benchmark aborts. That check is also the warm-up.

    Peak memory (``--memory``, on by default): on CUDA the caching allocator's peak above the
    inputs; on CPU the growth of the peak resident set size of a fresh spawned process that builds
    the inputs and runs one forward + backward (one process per case and method).

    Malloc: the timing process keeps freed memory in glibc's heap (``tune_glibc_malloc``), otherwise
    both methods page-fault their large temporaries again on every call, by amounts that depend on
    heap history.

    Threads: one intra-op thread by default (``--threads``). On a shared machine with as many busy
    processes as cores, OpenMP's spin-waiting makes every parallel kernel wait for a descheduled
    thread: a 200k-entry call measured 160 ms with 2 threads and 3.5 ms with 1 on the 2-core CI
    machine, which measures the neighbours, not the loss.

Cases (delta = 1, the papers' value), the inputs of ``benchmarks/bench_rank_sort.py``
    dense head: N = 1e6 logits, P = 50 / 200 / 1000 positives, "trained" (negatives ~ N(-4, 1),
    positives ~ N(2, 1)) and "untrained" (all ~ N(0, 1)). R-CNN head: 16 images x 1000 RoIs x 80
    classes, P = 500 / 1000 / 3000 positive RoIs (one-hot over classes), all ~ N(0, 1).
    Localisation errors of the positives ~ U(0, 1).
    P scaling (``--scaling``): trained dense inputs, N = 1e6, P = 1e2 ... 1e5; the loop is run only
    where an estimate from 32 of its positives stays under a minute.

Usage
    python benchmarks/bench_ranking_losses.py [--device cpu|cuda] [--quick] [--no-memory]
                                              [--scaling] [--cases SUBSTR[,..]]
"""

import argparse
import ctypes
import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from rs_detectron2.losses import alrp_loss, ap_loss

DELTA = 1.0
SEED = 0
LOOP_BUDGET_S = 60.0
MIB = 1024.0 * 1024.0


# ----------------------------------------------------------------------------------------------
# The authors' algorithm: a loop over positives (float32, relevant negatives only)


def _relevant(s, y, delta):
    fg = y > 0
    fg_logits = s[fg]
    rel = (y == 0) & (s >= fg_logits.min() - delta)
    return fg, fg_logits, rel, s[rel]


def _step(x, delta):
    return torch.clamp(x / (2 * delta) + 0.5, 0, 1)


def loop_ap(s, y, delta):
    """(loss, grad) of AP Loss by the authors' loop."""
    grad = torch.zeros_like(s)
    fg, fg_logits, rel, bg_logits = _relevant(s, y, delta)
    num_pos = fg_logits.numel()
    bg_grad = torch.zeros_like(bg_logits)
    fg_grad = torch.zeros_like(fg_logits)
    prec = torch.zeros_like(fg_logits)
    max_prec = 0.0
    for i in torch.argsort(fg_logits):
        h_fg = _step(fg_logits - fg_logits[i], delta)
        h_fg[i] = 0
        h_bg = _step(bg_logits - fg_logits[i], delta)
        rank_pos = 1 + h_fg.sum()
        rank = rank_pos + h_bg.sum()
        current = rank_pos / rank
        if max_prec <= current:  # a host synchronisation per positive
            max_prec = current
            bg_grad += h_bg / rank
        else:
            bg_grad += h_bg / rank * ((1 - max_prec) / (1 - current))
        fg_grad[i] = -(1 - max_prec)
        prec[i] = max_prec
    grad[fg] = fg_grad / num_pos
    grad[rel] = bg_grad / num_pos
    return 1 - prec.mean(), grad


def loop_alrp(s, y, loc, delta, eps=1e-5):
    """(loss_cls, rank, order, grad) of the aLRP classification component by the authors' loop;
    ``rank`` and ``order`` (ascending logit) feed the localisation component."""
    grad = torch.zeros_like(s)
    fg, fg_logits, rel, bg_logits = _relevant(s, y, delta)
    num_pos = fg_logits.numel()
    bg_grad = torch.zeros_like(bg_logits)
    fg_grad = torch.zeros_like(fg_logits)
    rank = torch.zeros_like(fg_logits)
    prec = torch.zeros_like(fg_logits)
    order = torch.argsort(fg_logits)
    for i in order:
        h_fg = _step(fg_logits - fg_logits[i], delta)
        h_fg[i] = 0
        h_bg = _step(bg_logits - fg_logits[i], delta)
        rank_pos = 1 + h_fg.sum()
        num_fp = h_bg.sum()
        rank[i] = rank_pos + num_fp
        prec[i] = rank_pos / rank[i]
        if num_fp > eps:  # a host synchronisation per positive
            fg_grad[i] = -(torch.sum(h_fg * loc) + num_fp) / rank[i]
            bg_grad += h_bg * (-fg_grad[i] / num_fp)
    grad[fg] = fg_grad / num_pos
    grad[rel] = bg_grad / num_pos
    return 1 - prec.mean(), rank, order, grad


class _LoopAP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, delta):
        loss, grad = loop_ap(logits.detach().reshape(-1), targets.reshape(-1), delta)
        ctx.save_for_backward(grad.view(logits.shape))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None


class _LoopALRP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, loc, delta):
        loss_cls, rank, order, grad = loop_alrp(
            logits.detach().reshape(-1), targets.reshape(-1), loc.detach(), delta
        )
        ctx.save_for_backward(grad.view(logits.shape))
        ctx.mark_non_differentiable(rank, order)
        return loss_cls, rank, order

    @staticmethod
    def backward(ctx, grad_loss, grad_rank, grad_order):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None, None


def loop_alrp_autograd(logits, targets, loc, delta=DELTA):
    """(loss_cls, loss_loc): the localisation component as the authors' head computes it, by
    descending logit with the detached rank."""
    loss_cls, rank, order = _LoopALRP.apply(logits, targets, loc, delta)
    desc = order.flip(0)
    loss_loc = (torch.cumsum(loc[desc], 0) / rank[desc]).mean()
    return loss_cls, loss_loc


# ----------------------------------------------------------------------------------------------
# Cases and inputs


@dataclass(frozen=True)
class Case:
    head: str  # "dense" or "rcnn"
    regime: str  # "trained" or "untrained"
    num_pos: int
    num: int

    @property
    def name(self) -> str:
        return f"{self.head}-{self.regime}-P{self.num_pos}"


def all_cases(quick: bool) -> List[Case]:
    if quick:
        return [Case("dense", r, 200, 200_000) for r in ("trained", "untrained")]
    regimes = ("trained", "untrained")
    cases = [Case("dense", r, p, 1_000_000) for r in regimes for p in (50, 200, 1000)]
    return cases + [Case("rcnn", "untrained", p, 16 * 1000 * 80) for p in (500, 1000, 3000)]


def make_inputs(case: Case, device):
    """Float32 (logits, targets, loc_errors) with the distributions of bench_rank_sort.py."""
    gen = torch.Generator().manual_seed(SEED + case.num_pos)
    logits = torch.empty(case.num)
    targets = torch.zeros(case.num)
    if case.head == "dense":
        # k distinct indices without an N-sized temporary (it would raise the peak RSS)
        pos = torch.randint(0, case.num, (2 * case.num_pos + 16,), generator=gen).unique()
        pos = pos[torch.randperm(pos.numel(), generator=gen)[: case.num_pos]]
    else:
        rois = torch.randperm(16 * 1000, generator=gen)[: case.num_pos]
        pos = rois * 80 + torch.randint(0, 80, (case.num_pos,), generator=gen)
    if case.regime == "trained":
        logits.normal_(-4.0, 1.0, generator=gen)
        logits[pos] = torch.randn(case.num_pos, generator=gen) + 2.0
    else:
        logits.normal_(0.0, 1.0, generator=gen)
    targets[pos] = 1.0 - 0.5 * torch.rand(case.num_pos, generator=gen)
    loc = torch.rand(case.num_pos, generator=gen)
    if case.head == "rcnn":
        logits, targets = logits.view(-1, 80), targets.view(-1, 80)
    return logits.to(device), targets.to(device), loc.to(device)


def count_relevant(logits, targets) -> int:
    s, y = logits.reshape(-1), targets.reshape(-1)
    return int(((y == 0) & (s >= s[y > 0].min() - DELTA)).sum())


# ----------------------------------------------------------------------------------------------
# One forward + backward of each method


def run_method(method: str, logits, targets, loc):
    """Forward + backward; returns (values, gradients) as lists of tensors."""
    x = logits.detach().requires_grad_(True)
    if method.startswith("ap"):
        if method == "ap-fast":
            loss = ap_loss(x, targets, DELTA)
        else:
            loss = _LoopAP.apply(x, targets, DELTA)
        loss.backward()
        return [loss.detach()], [x.grad]
    lx = loc.detach().requires_grad_(True)
    if method == "alrp-fast":
        loss_cls, loss_loc = alrp_loss(x, targets, lx, DELTA)
    else:
        loss_cls, loss_loc = loop_alrp_autograd(x, targets, lx)
    (loss_cls + loss_loc).backward()
    return [loss_cls.detach(), loss_loc.detach()], [x.grad, lx.grad]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(method, logits, targets, loc, device) -> float:
    _sync(device)
    start = time.perf_counter()
    run_method(method, logits, targets, loc)
    _sync(device)
    return time.perf_counter() - start


def check(family: str, logits, targets, loc):
    """Fast vs loop: values to 1e-4 relative, logit gradients to 1e-4 of the largest, the
    localisation gradient to 1e-2 of the largest (the loop's float32 autograd through a cumsum
    over P entries is off by up to ~1e-3 relative at P = 1000, where the fast loss agrees with a
    float64 loop to 1e-10); returns the loop's time (the check doubles as the warm-up)."""
    run_method(f"{family}-fast", logits, targets, loc)
    start = time.perf_counter()
    ref_vals, ref_grads = run_method(f"{family}-loop", logits, targets, loc)
    loop_s = time.perf_counter() - start
    vals, grads = run_method(f"{family}-fast", logits, targets, loc)
    for a, b in zip(vals, ref_vals, strict=True):
        if not abs(float(a) - float(b)) <= 1e-4 * max(abs(float(b)), 1e-12):
            raise SystemExit(f"{family}: value {float(a)} != loop {float(b)}")
    for a, b, tol in zip(grads, ref_grads, (1e-4, 1e-2), strict=False):
        scale = float(b.abs().max()) or 1.0
        err = float((a.double() - b.double()).abs().max())
        if err > tol * scale:
            raise SystemExit(f"{family}: gradient differs by {err:.3g} (largest {scale:.3g})")
    return loop_s


# ----------------------------------------------------------------------------------------------
# Peak memory


def tune_glibc_malloc() -> None:
    """Keep freed memory in the heap (no mmap/munmap per large temporary) in this process, so
    that neither method pays page faults again on every call; both sides run with it. The memory
    children keep the default settings."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: the largest allowed value
    libc.mallopt(-1, 1024 * 1024 * 1024)  # M_TRIM_THRESHOLD


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(case: Case, method: str, threads: int, queue):
    torch.set_num_threads(threads)
    logits, targets, loc = make_inputs(case, torch.device("cpu"))
    # No warm-up: glibc would then serve the call from memory the warm-up already made resident.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM) to the current one
    before = _status_bytes("VmRSS")
    run_method(method, logits, targets, loc)
    queue.put(_status_bytes("VmHWM") - before)


def peak_memory(case: Case, method: str, device) -> float:
    """Peak extra memory (MiB) of one forward + backward above the inputs (CPU: the peak resident
    set size of a fresh process above its size before the call, default malloc settings)."""
    if device.type == "cuda":
        logits, targets, loc = make_inputs(case, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run_method(method, logits, targets, loc)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / MIB
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    args = (case, method, torch.get_num_threads(), queue)
    proc = ctx.Process(target=_memory_child, args=args)
    proc.start()
    value = queue.get()
    proc.join()
    return value / MIB


# ----------------------------------------------------------------------------------------------
# Tables


def median_times(methods, logits, targets, loc, device, reps: Dict[str, int]) -> Dict[str, float]:
    """Median seconds per method, repeats interleaved across methods."""
    times: Dict[str, List[float]] = {m: [] for m in methods}
    for r in range(max(reps.values())):
        for m in methods:
            if r < reps[m]:
                times[m].append(timed(m, logits, targets, loc, device))
    return {m: statistics.median(t) for m, t in times.items()}


def main_table(cases, device, memory: bool):
    print(
        "| case | N | P | N_rel | AP loop ms | AP fast ms | AP x | aLRP loop ms | aLRP fast ms "
        "| aLRP x | peak MiB AP loop / fast | peak MiB aLRP loop / fast |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        logits, targets, loc = make_inputs(case, device)
        loop_ap_s = check("ap", logits, targets, loc)
        loop_alrp_s = check("alrp", logits, targets, loc)
        reps = {
            "ap-fast": 7,
            "alrp-fast": 7,
            "ap-loop": 1 if loop_ap_s > 5 else 3,
            "alrp-loop": 1 if loop_alrp_s > 5 else 3,
        }
        t = median_times(list(reps), logits, targets, loc, device, reps)
        ms = {m: f"{1e3 * v:.1f}" for m, v in t.items()}
        mib = {m: f"{peak_memory(case, m, device):.1f}" if memory else "-" for m in reps}

        print(
            f"| {case.name} | {logits.numel():.2e} | {case.num_pos} | "
            f"{count_relevant(logits, targets):.2e} | {ms['ap-loop']} | {ms['ap-fast']} | "
            f"{t['ap-loop'] / t['ap-fast']:.0f} | {ms['alrp-loop']} | {ms['alrp-fast']} | "
            f"{t['alrp-loop'] / t['alrp-fast']:.0f} | {mib['ap-loop']} / {mib['ap-fast']} | "
            f"{mib['alrp-loop']} / {mib['alrp-fast']} |",
            flush=True,
        )


def scaling_table(device):
    """P scaling at N = 1e6 (trained): fast always; the loop where 32 of its positives predict
    under LOOP_BUDGET_S."""
    print("\n| P | N_rel | AP loop s | AP fast ms | aLRP loop s | aLRP fast ms |")
    print("|---|---|---|---|---|---|")
    for num_pos in (100, 1_000, 10_000, 100_000):
        case = Case("dense", "trained", num_pos, 1_000_000)
        logits, targets, loc = make_inputs(case, device)
        fast = median_times(
            ["ap-fast", "alrp-fast"], logits, targets, loc, device, {"ap-fast": 5, "alrp-fast": 5}
        )
        # Estimate: the loop over 32 positives (the others ignored) scaled to P.
        sub_targets = targets.clone()
        sub_targets[targets > 0] = torch.where(torch.arange(num_pos, device=device) < 32, 1.0, -1.0)
        cells = {}
        for fam in ("ap", "alrp"):
            sub_loc = loc[:32]
            est = timed(f"{fam}-loop", logits, sub_targets, sub_loc, device) * num_pos / 32
            if est > LOOP_BUDGET_S:
                cells[fam] = f"not run (est. {est:.0f})"
            else:
                cells[fam] = f"{timed(f'{fam}-loop', logits, targets, loc, device):.2f}"
        print(
            f"| {num_pos} | {count_relevant(logits, targets):.2e} | {cells['ap']} | "
            f"{1e3 * fast['ap-fast']:.1f} | {cells['alrp']} | {1e3 * fast['alrp-fast']:.1f} |",
            flush=True,
        )


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="two small cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--scaling", action="store_true", help="add the P-scaling table")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1, see above)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        tune_glibc_malloc()
    device = torch.device(args.device)
    cases = all_cases(args.quick)
    if args.cases:
        keys = args.cases.split(",")
        cases = [c for c in cases if any(k in c.name for k in keys)]
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "-"
    print(
        f"torch {torch.__version__}, device {device} ({gpu}), {cpu}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads; load average before: {os.getloadavg()[0]:.2f}"
    )
    start = time.perf_counter()
    main_table(cases, device, memory=not args.no_memory)
    if args.scaling:
        scaling_table(device)
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f}; total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
