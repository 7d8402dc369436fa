"""Benchmark: exact loop-free AP Loss and aLRP Loss vs the authors' loop, and RS / AP / aLRP side
by side.

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

    Both run in the same process on the same inputs, repeats interleaved, the median reported.
    Before timing, each case is checked once: values agree to 1e-4 relative and gradients to 1e-4
    of the largest, otherwise the benchmark aborts. That check is also the warm-up. Peak memory
    (``--no-memory`` skips it), inputs and noise control: ``benchmarks/harness.py``.

    ``--tables family`` times ``rank_sort_loss`` (delta 0.5), ``ap_loss`` and ``alrp_loss``
    (delta 1, the papers' values) side by side on the same inputs, repeats interleaved: the three
    share one exact ranking core, so AP and aLRP should cost what RS costs (RS also has its
    positive-positive sorting pass).

    Threads: one intra-op thread by default (``--threads``). On a shared machine with as many busy
    processes as cores, OpenMP's spin-waiting makes every parallel kernel wait for a descheduled
    thread (a 200k-entry call measured 160 ms with 2 threads and 3.5 ms with 1 on a loaded 2-core
    machine), which measures the neighbours, not the loss.

Cases (delta = 1): ``harness.standard_cases`` (dense N = 1e6, P = 50 / 200 / 1000, trained and
untrained; R-CNN 16 x 1000 x 80, P = 500 / 1000 / 3000). ``--tables scaling``: trained dense
inputs, N = 1e6, P = 1e2 ... 1e5; the loop is run only where an estimate from 32 of its positives
stays under a minute. ``--tables family``: dense N = 1e6, P = 1000, trained and untrained, and
R-CNN P = 1000 (``--quick``: N = 2e5, P = 200).

Usage
    python benchmarks/bench_ranking_losses.py [--device cpu|cuda] [--quick] [--no-memory]
                                              [--tables main,scaling,family] [--scaling]
                                              [--cases SUBSTR[,..]] [--threads T] [--markdown]
"""

import argparse
import functools
import os
import time
from typing import Dict, List, Optional

import harness as H
import torch

from rs_detectron2.losses import alrp_loss, ap_loss, rank_sort_loss

DELTA = 1.0
RS_DELTA = 0.5
LOOP_BUDGET_S = 60.0


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
# One forward + backward of each method

METHODS = ("ap-loop", "ap-fast", "alrp-loop", "alrp-fast", "rs-fast")


def run_method(method: str, logits, targets, loc):
    """Forward + backward; returns (values, gradients) as lists of tensors."""
    x = logits.detach().requires_grad_(True)
    if method == "rs-fast":
        loss_rank, loss_sort = rank_sort_loss(x, targets, RS_DELTA)
        loss_rank.backward()
        return [loss_rank.detach(), loss_sort], [x.grad]
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


def call(method: str, logits, targets, loc):
    return functools.partial(run_method, method, logits, targets, loc)


def check(family: str, logits, targets, loc, device) -> float:
    """Fast vs loop: values to 1e-4 relative, logit gradients to 1e-4 of the largest, the
    localisation gradient to 1e-2 of the largest (the loop's float32 autograd through a cumsum
    over P entries is off by up to ~1e-3 relative at P = 1000, where the fast loss agrees with a
    float64 loop to 1e-10); returns the loop's time (the check doubles as the warm-up)."""
    run_method(f"{family}-fast", logits, targets, loc)
    start = time.perf_counter()
    ref_vals, ref_grads = run_method(f"{family}-loop", logits, targets, loc)
    H.sync(device)
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


def _memory_child(case: H.Case, method: str, threads: int):
    torch.set_num_threads(threads)
    logits, targets, loc = H.make_inputs(case, torch.device("cpu"))
    # A tiny warm-up call: one-off allocations (thread pools, kernel caches) are not counted.
    run_method(method, *H.make_inputs(H.dense("untrained", 20, 1000), torch.device("cpu")))
    peak, _ = H.rss_peak_of(call(method, logits, targets, loc))
    return peak


def peak_mib(case: H.Case, method: str, device) -> float:
    """Peak extra memory (MiB) of one forward + backward above the inputs (CPU: a fresh process
    per case and method, default malloc settings)."""
    if device.type == "cuda":
        logits, targets, loc = H.make_inputs(case, device)
        return H.cuda_peak_of(call(method, logits, targets, loc), device) / H.MIB
    return H.in_fresh_process(_memory_child, case, method, torch.get_num_threads()) / H.MIB


def median_ms(methods, logits, targets, loc, device, reps: Dict[str, int]) -> Dict[str, float]:
    calls = {m: call(m, logits, targets, loc) for m in methods}
    return {m: 1e3 * v for m, v in H.medians(H.interleaved(calls, reps, device)).items()}


# ----------------------------------------------------------------------------------------------
# Tables


def main_table(cases, device, memory: bool, markdown: bool):
    header = ["case", "N", "P", "N_rel", "AP loop ms", "AP fast ms", "AP x", "aLRP loop ms"]
    header += ["aLRP fast ms", "aLRP x", "peak MiB AP loop / fast", "peak MiB aLRP loop / fast"]
    body = []
    for case in cases:
        logits, targets, loc = H.make_inputs(case, device)
        loop_ap_s = check("ap", logits, targets, loc, device)
        loop_alrp_s = check("alrp", logits, targets, loc, device)
        reps = {
            "ap-fast": 7,
            "alrp-fast": 7,
            "ap-loop": 1 if loop_ap_s > 5 else 3,
            "alrp-loop": 1 if loop_alrp_s > 5 else 3,
        }
        t = median_ms(list(reps), logits, targets, loc, device, reps)
        mib = {m: f"{peak_mib(case, m, device):.1f}" if memory else "-" for m in reps}
        body.append(
            [
                case.name,
                H.sci(logits.numel()),
                str(case.num_pos),
                str(H.count_relevant(logits, targets, DELTA)),
                H.ms(t["ap-loop"]),
                H.ms(t["ap-fast"]),
                f"{t['ap-loop'] / t['ap-fast']:.0f}",
                H.ms(t["alrp-loop"]),
                H.ms(t["alrp-fast"]),
                f"{t['alrp-loop'] / t['alrp-fast']:.0f}",
                f"{mib['ap-loop']} / {mib['ap-fast']}",
                f"{mib['alrp-loop']} / {mib['alrp-fast']}",
            ]
        )
        print(f"  {case.name}: done", flush=True)
    H.print_grid(header, body, markdown, left=1)


def scaling_table(device, markdown: bool):
    """P scaling at N = 1e6 (trained): fast always; the loop where 32 of its positives predict
    under LOOP_BUDGET_S."""
    body = []
    for num_pos in (100, 1_000, 10_000, 100_000):
        case = H.dense("trained", num_pos, 1_000_000)
        logits, targets, loc = H.make_inputs(case, device)
        fast = median_ms(
            ["ap-fast", "alrp-fast"], logits, targets, loc, device, {"ap-fast": 5, "alrp-fast": 5}
        )
        # Estimate: the loop over 32 positives (the others ignored) scaled to P.
        sub_targets = targets.clone()
        keep = torch.arange(num_pos, device=device) < 32
        sub_targets[targets > 0] = torch.where(keep, 1.0, -1.0)
        cells = {}
        for fam in ("ap", "alrp"):
            est = H.timed(call(f"{fam}-loop", logits, sub_targets, loc[:32]), device) * num_pos / 32
            if est > LOOP_BUDGET_S:
                cells[fam] = f"not run (est. {est:.0f})"
            else:
                cells[fam] = f"{H.timed(call(f'{fam}-loop', logits, targets, loc), device):.2f}"
        body.append(
            [
                str(num_pos),
                str(H.count_relevant(logits, targets, DELTA)),
                cells["ap"],
                H.ms(fast["ap-fast"]),
                cells["alrp"],
                H.ms(fast["alrp-fast"]),
            ]
        )
        print(f"  P={num_pos}: done", flush=True)
    header = ["P", "N_rel", "AP loop s", "AP fast ms", "aLRP loop s", "aLRP fast ms"]
    H.print_grid(header, body, markdown, left=0)


def family_cases(quick: bool) -> List[H.Case]:
    if quick:
        return [H.dense("trained", 200, 200_000), H.dense("untrained", 200, 200_000)]
    return [
        H.dense("trained", 1000, 1_000_000),
        H.dense("untrained", 1000, 1_000_000),
        H.rcnn("untrained", 1000),
    ]


def family_table(cases, device, memory: bool, markdown: bool, reps: int = 9):
    """RS, AP and aLRP on the same inputs, repeats interleaved: medians and ratios to RS."""
    methods = ("rs-fast", "ap-fast", "alrp-fast")
    body = []
    for case in cases:
        logits, targets, loc = H.make_inputs(case, device)
        for m in methods:
            run_method(m, logits, targets, loc)  # warm-up
        t = median_ms(methods, logits, targets, loc, device, dict.fromkeys(methods, reps))
        rel = (H.count_relevant(logits, targets, d) for d in (RS_DELTA, DELTA))
        cells = [case.describe(), H.sci(case.num), str(case.num_pos), " / ".join(map(str, rel))]
        cells += [f"{t[m]:.1f}" for m in methods]
        cells += [f"{t['ap-fast'] / t['rs-fast']:.2f}", f"{t['alrp-fast'] / t['rs-fast']:.2f}"]
        if memory:
            cells += [f"{peak_mib(case, m, device):.1f}" for m in methods]
        body.append(cells)
        print(f"  {case.name}: done", flush=True)
    header = ["input", "N", "P", "rel. neg. (RS / AP)", "RS ms", "AP ms", "aLRP ms"]
    header += ["AP / RS", "aLRP / RS"]
    if memory:
        header += ["RS peak MiB", "AP peak MiB", "aLRP peak MiB"]
    H.print_grid(header, body, markdown, left=1)


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="small cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument(
        "--tables", default="main", help="comma-separated: main, scaling, family (see above)"
    )
    parser.add_argument("--scaling", action="store_true", help="add the P-scaling table")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1, see above)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        print(H.tune_glibc_malloc())
    device = torch.device(args.device)
    tables = [t for t in args.tables.split(",") if t] + (["scaling"] if args.scaling else [])
    print(H.machine_line(device))
    contention = H.Contention()
    start = time.perf_counter()
    memory = not args.no_memory
    if "main" in tables:
        print("\nAP and aLRP: the authors' loop vs the exact losses (delta 1)")
        main_table(
            H.select(H.standard_cases(args.quick), args.cases), device, memory, args.markdown
        )
    if "scaling" in tables:
        print("\nP scaling at N = 1e6, trained")
        scaling_table(device, args.markdown)
    if "family" in tables:
        print(f"\nRS (delta {RS_DELTA}) / AP / aLRP (delta {DELTA}) side by side, medians of 9")
        cases = H.select(family_cases(args.quick), args.cases)
        family_table(cases, device, memory, args.markdown)
    print(f"\n{contention.line('during the run')}; load average after: {os.getloadavg()[0]:.2f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
