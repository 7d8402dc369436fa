"""Shared harness of the loss benchmarks (``bench_rank_sort.py``, ``bench_ranking_losses.py``).

- Cases: flat ranking pools of a dense head (N logits, P positives) or an R-CNN head (images x RoIs
  x classes, one-hot positives), "trained" (negatives ~ N(-4, 1), positives ~ N(2, 1): few
  relevant negatives) or "untrained" (every logit ~ N(0, 1)); float32 logits, targets (the
  positives' qualities) and per-positive localisation errors, built without input-sized
  temporaries.
- Timing: one forward + backward per call, repeats interleaved across methods, medians.
- Peak memory: on CUDA the caching allocator's peak above what was allocated before the call; on
  CPU the growth of the peak resident set size of a fresh spawned process (the CPU allocator keeps
  no peak statistics, and tracemalloc does not see ATen's allocations).
- Noise control on a shared CPU: glibc's malloc thresholds fixed (freed buffers are reused, not
  page-faulted again), and the CPU time that other processes used during the run reported.
- Tables: plain text or Markdown.
"""

import ctypes
import gc
import multiprocessing
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

SEED = 0
MIB = 1024.0 * 1024.0

REGIMES = {
    "trained": "negatives ~ N(-4,1), positives ~ N(2,1) (few relevant negatives)",
    "untrained": "all logits ~ N(0,1) (nearly every negative relevant)",
}


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

    def describe(self) -> str:
        if self.head == "rcnn":
            return f"R-CNN {self.images}x{self.rois}x{self.classes}, {self.regime}"
        return f"dense, {self.regime}"


def dense(regime: str, num_pos: int, num: int) -> Case:
    return Case("dense", regime, num_pos, num)


def rcnn(regime: str, num_pos: int, images: int = 16, rois: int = 1000, classes: int = 80) -> Case:
    return Case("rcnn", regime, num_pos, images * rois * classes, images, rois, classes)


def standard_cases(quick: bool) -> List[Case]:
    """The main tables' cases: dense N = 1e6 with P = 50 / 200 / 1000 in both regimes and R-CNN
    16 x 1000 x 80 with P = 500 / 1000 / 3000 untrained; ``quick``: three small ones."""
    if quick:
        return [
            dense("trained", 200, 200_000),
            dense("untrained", 200, 200_000),
            rcnn("untrained", 200, images=2),
        ]
    cases = [dense(r, p, 1_000_000) for r in ("trained", "untrained") for p in (50, 200, 1000)]
    return cases + [rcnn("untrained", p) for p in (500, 1000, 3000)]


def select(cases: Sequence[Case], substrings: str) -> List[Case]:
    """The cases whose name contains one of the comma-separated ``substrings`` (all if empty)."""
    wanted = [w for w in substrings.split(",") if w]
    return [c for c in cases if not wanted or any(w in c.name for w in wanted)]


def _distinct_indices(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct random indices in [0, n) without an n-sized temporary (``randperm(n)`` would
    lift the peak resident set size above the inputs)."""
    while True:
        idx = torch.randint(0, n, (2 * k + 16,), generator=gen).unique()
        if idx.numel() >= k:
            return idx[torch.randperm(idx.numel(), generator=gen)[:k]]


def make_inputs(case: Case, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 ``(logits, targets, loc_errors)``, built in place (no input-sized temporary).

    Dense: targets of the positives ~ U(0.1, 1]. R-CNN: (images x rois, classes), one positive
    class per positive RoI with a target ~ U(0.5, 1], its other classes negatives. Localisation
    errors of the positives ~ U(0, 1), in the flat positive order.
    """
    gen = torch.Generator().manual_seed(SEED + case.num_pos)
    logits = torch.empty(case.num)
    targets = torch.zeros(case.num)
    if case.head == "dense":
        pos = _distinct_indices(case.num, case.num_pos, gen)
        quality = 1.0 - 0.9 * torch.rand(case.num_pos, generator=gen)
    else:
        rois = _distinct_indices(case.images * case.rois, case.num_pos, gen)
        cls = torch.randint(0, case.classes, (case.num_pos,), generator=gen)
        pos = rois * case.classes + cls
        quality = 1.0 - 0.5 * torch.rand(case.num_pos, generator=gen)
    if case.regime == "trained":
        logits.normal_(-4.0, 1.0, generator=gen)
        logits[pos] = torch.randn(case.num_pos, generator=gen) + 2.0
    else:
        logits.normal_(0.0, 1.0, generator=gen)
    targets[pos] = quality
    loc = torch.rand(case.num_pos, generator=gen)
    if case.head == "rcnn":
        shape = (case.images * case.rois, case.classes)
        logits, targets = logits.view(shape), targets.view(shape)
    return logits.to(device), targets.to(device), loc.to(device)


def count_relevant(logits, targets, delta: float) -> int:
    """Negatives with a logit at least the lowest positive's minus ``delta``."""
    s, y = logits.reshape(-1), targets.reshape(-1)
    return int(((y == 0) & (s >= s[y > 0].min() - delta)).sum())


# ----------------------------------------------------------------------------------------------
# Timing


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device) -> float:
    """Seconds of one ``call()`` (inputs are prepared outside the timer)."""
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    calls: Dict[str, Callable[[], object]], reps: Dict[str, int], device
) -> Dict[str, List[float]]:
    """Seconds of ``reps[name]`` calls of each method, repeats interleaved across the methods (a
    slow minute of the machine hits every method alike)."""
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for rep in range(max(reps.values())):
        for name, call in calls.items():
            if rep < reps[name]:
                times[name].append(timed(call, device))
    return times


def medians(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------------------------
# Peak memory


def _status_kib(field: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (Linux), or None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (VmHWM) to the current one (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib() -> int:
    """VmHWM of this process's own address space where available: ru_maxrss is not reset by exec,
    so a spawned child would start with its parent's high-water mark."""
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_peak_of(call: Callable[[], object]) -> Tuple[int, int]:
    """Peak extra resident bytes of ``call()`` in this process: ``(peak, hidden)``.

    The peak resident set size is reset before the call where Linux allows it (``hidden`` is then
    0); otherwise ``hidden`` is how far an earlier high-water mark sat above the resident size
    before the call (up to that much of the call's peak may be hidden under it).
    """
    gc.collect()
    reset = _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    peak_before = _peak_rss_kib()
    call()
    peak_after = _peak_rss_kib()
    if reset and rss_before is not None:
        return (peak_after - rss_before) * 1024, 0
    hidden = 0 if rss_before is None else max(0, peak_before - rss_before)
    return (peak_after - peak_before) * 1024, hidden * 1024


def in_fresh_process(job: Callable, *args):
    """``job(*args)`` in a fresh spawned process (its return value); ``job`` must be a module-level
    function. Used for CPU peak memory: a high-water mark is per process."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(job, args)


def cuda_peak_of(call: Callable[[], object], device) -> int:
    """Peak bytes that ``call()`` allocated above what was allocated before it (CUDA)."""
    gc.collect()
    torch.cuda.empty_cache()
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


# ----------------------------------------------------------------------------------------------
# The machine


def tune_glibc_malloc() -> str:
    """Fixes glibc's mmap and trim thresholds so that freed buffers are reused, not re-faulted.

    With glibc's default (dynamic) thresholds, whether a freed multi-MiB buffer is returned to the
    OS depends on the heap's history; when it is, every later allocation of that size page-faults
    again (a loop over positives with several N-sized temporaries per positive was measured at 1
    to 10 ms per positive at N = 1e6 depending only on this). Fixing both thresholds (as a caching
    allocator does on a GPU) removes that noise and favours no method. Returns a line for the
    header.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1  # 32 MiB is glibc's maximum
        ok = ok and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    if ok:
        return "malloc: glibc mmap/trim thresholds fixed at 32 MiB / 1 GiB (tune_glibc_malloc)"
    return "malloc: left as is (not glibc)"


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def machine_line(device) -> str:
    return (
        f"torch {torch.__version__}, device {device} ({device_name(device)}), "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average "
        f"{os.getloadavg()[0]:.2f}"
    )


class Contention:
    """How much CPU other processes used while the benchmark ran (Linux /proc/stat).

    The wall clock is only meaningful when the benchmark has the cores to itself, so the busy time
    of the whole machine minus this process's own CPU time (and its reaped children's) is
    reported, as a share of all cores over the elapsed time.
    """

    def __init__(self):
        self.cores = os.cpu_count() or 1
        self.start = self.sample()

    @staticmethod
    def sample():
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
        now = self.sample()
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


# ----------------------------------------------------------------------------------------------
# Tables


def sci(n: int) -> str:
    """1000000 -> '1e6', 1280000 -> '1.28e6'."""
    exponent = len(str(n)) - 1
    return f"{n / 10**exponent:g}e{exponent}"


def ms(value: Optional[float]) -> str:
    """Milliseconds with one decimal below 100, none above; '-' for None."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return "-" if a is None or b is None else f"{a / b:.1f}x"


def print_grid(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool, left: int):
    """A table; the first ``left`` columns left-aligned in Markdown, the others right-aligned."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|")
        for cells in body:
            print("| " + " | ".join(cells) + " |")
        return
    table = [list(header)] + [list(cells) for cells in body]
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    for i, cells in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
