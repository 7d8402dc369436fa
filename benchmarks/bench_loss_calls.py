#!/usr/bin/env python
"""CPU time of one rank_sort_loss forward + backward on the target inputs, for comparing two
versions of the loss side by side: run it alternately with each version first on the path.

    git worktree add /tmp/before <commit>
    for i in 1 2; do
      PYTHONPATH=/tmp/before python /tmp/before/benchmarks/bench_loss_calls.py   # or this file
      PYTHONPATH=. python benchmarks/bench_loss_calls.py
    done

One intra-op thread, glibc's malloc thresholds fixed (``harness.tune_glibc_malloc``), the median
of ``--repeats`` calls per input after one warm-up call. It imports ``rs_detectron2`` from the
path, and the inputs from ``benchmarks/harness.py`` beside it, so both versions see the same
inputs.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

from rs_detectron2.losses import rank_sort_loss  # noqa: E402

CASES = [
    H.dense("trained", 1000, 1_000_000),
    H.dense("untrained", 1000, 1_000_000),
    H.dense("trained", 200, 1_000_000),
    H.rcnn("trained", 3000),
    H.dense("trained", 5000, 200_000),
    H.dense("trained", 20_000, 200_000),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    H.tune_glibc_malloc()
    import rs_detectron2

    print(f"rs_detectron2 from {os.path.dirname(rs_detectron2.__file__)}; {H.machine_line('cpu')}")
    for case in CASES:
        logits, targets, _ = H.make_inputs(case, "cpu")

        def call(logits=logits, targets=targets):
            x = logits.detach().requires_grad_(True)
            rank_sort_loss(x, targets, 0.5)[0].backward()

        call()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(
            f"{case.name:24s} N={case.num:>8d}  {1e3 * statistics.median(times):8.2f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
