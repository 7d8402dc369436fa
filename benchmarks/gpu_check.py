#!/usr/bin/env python
"""Everything a borrowed GPU should tell us about RS, in one command that writes one report.

    python benchmarks/gpu_check.py --out output/gpu_check              # on a GPU, about 8 minutes
    python benchmarks/gpu_check.py --out DIR --device cpu --tiny       # the same on CPU, tiny
    python benchmarks/gpu_check.py --out DIR --only smoke,launches     # some parts

Parts, run in this order, each written to ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` as soon
as it (or one of its models) finishes, so that a run cut short still leaves what it measured:

- ``smoke``: every RS config (``configs/*/rs_*.py``; ``--tiny``: ``quick_schedules/rs_*_tiny.py``)
  built from random initialisation, trained for ``--smoke-iters`` iterations on generated images
  (2 per batch, 800 x 1333, SOLOv2 and YOLACT at their recipe sizes; ``--tiny``: 160 x 160) with
  AMP (float16 and a gradient scaler on a GPU, bfloat16 on a CPU), RS-Faster R-CNN and RS-ATSS
  also without; every loss must stay finite, then an inference pass on the batch must give
  finite boxes. A failure is recorded with its error and the next config runs.
- ``step``: the training step of each RS detector against its stock twin, the median of
  interleaved steps (``benchmarks/bench_train_step.py`` is the engine; ``--full`` models unless
  ``--tiny``), with each model's peak GPU memory of one step.
- ``loss``: RS, AP and aLRP Loss against the authors' loops (a Python loop over positives) at the
  sizes of a detector's heads: one 800 x 1333 image of an R-50-FPN dense head (3 anchors x 80
  classes, 1500 positives) and an R-CNN head (2 x 512 RoIs x 80 classes, 256 positives); the
  median of interleaved forward + backward calls, and the peak GPU memory of one call.
- ``launches``: per loss, the top-level aten operations of one forward + backward
  (torch.profiler), the CUDA kernels it launches (on a GPU) and its host synchronisations
  (``.item()`` / ``.tolist()`` calls), at N = 1e6, P = 1e3 and N = 2e5, P = 2e4, trained and
  untrained logits; on a CPU also with the GPU path's chunk sizes, the count a GPU would see.

The markdown report heads with the date, the commit, the device and the command; paste it into
docs/benchmarks.md ("RS on a GPU").
"""

import argparse
import dataclasses
import datetime
import glob
import json
import math
import os
import subprocess
import sys
import time
import traceback

import bench_train_step as BT
import harness as H
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from rs_detectron2.data.lint.config_checks import class_count_key
from rs_detectron2.engine import FiniteLossGuard
from rs_detectron2.losses import ranking_core
from rs_detectron2.utils.testing import host_reads, ranking_loss_step, top_level_ops

REPO = BT.REPO
PARTS = ("smoke", "step", "loss", "launches")
# Smoke runs without AMP as well for these (the two most used RS heads).
NO_AMP_TOO = ("rs_faster_rcnn_R_50_FPN_1x.py", "rs_atss_R_50_FPN_1x.py", "rs_faster_rcnn_tiny.py")
NO_AMP_TOO += ("rs_atss_tiny.py",)
# (height, width) of the smoke batch where the recipe is not 800 x 1333
RECIPE_SIZES = {"yolact": (550, 550), "solov2_light": (448, 768)}
LAUNCH_SIZES = ((1_000_000, 1000), (200_000, 20_000))


# ----------------------------------------------------------------------------------------------
# The report


class Report:
    """The results so far, rewritten to ``out/gpu_check.json`` and ``.md`` after every entry."""

    def __init__(self, out: str, meta: dict):
        os.makedirs(out, exist_ok=True)
        self.json_path = os.path.join(out, "gpu_check.json")
        self.md_path = os.path.join(out, "gpu_check.md")
        self.data = {"meta": meta, **{part: [] for part in PARTS}}
        self.write()

    def add(self, part: str, entry: dict) -> None:
        self.data[part].append(entry)
        self.write()
        print(f"[{part}] {json.dumps(entry, default=str)}", flush=True)

    def write(self) -> None:
        tmp = self.json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.json_path)
        with open(self.md_path, "w") as f:
            f.write(markdown(self.data))


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _num(value, fmt="{:.2f}"):
    return "-" if value is None else fmt.format(value)


def markdown(data: dict) -> str:
    """The report as markdown: a header, then one table per part that has results."""
    meta = data["meta"]
    out = [
        f"# RS GPU check, {meta['date']}\n",
        f"Commit `{meta['commit']}`; {meta['machine']}.\n",
        f"Command: `{meta['command']}`\n",
    ]
    if data["smoke"]:
        out.append("\n## Smoke: every RS config, random initialisation, generated data\n\n")
        rows = [
            [
                e["config"],
                "AMP" if e["amp"] else "float32",
                f"{e['height']}x{e['width']}",
                e["status"],
                _num(e.get("last_loss"), "{:.3f}"),
                _num(e.get("seconds"), "{:.1f}"),
                e.get("detections", "-"),
                e.get("error", "")[:120].replace("|", "/").replace("\n", " "),
            ]
            for e in data["smoke"]
        ]
        out.append(
            _table(
                ["config", "precision", "input", "status", "last total loss", "s"]
                + ["detections", "error"],
                rows,
            )
        )
    if data["step"]:
        out.append(
            "\n## Training step: RS against its stock twin (median of interleaved steps)\n\n"
        )
        rows = [
            [
                e["model"],
                e["stock_config"],
                _num(e["stock_s"], "{:.4f}"),
                _num(e["rs_s"], "{:.4f}"),
                _num(e["ratio"], "{:.3f}x"),
                _num(e.get("stock_peak_mib"), "{:.0f}"),
                _num(e.get("rs_peak_mib"), "{:.0f}"),
            ]
            for e in data["step"]
        ]
        out.append(
            _table(
                ["model", "stock twin", "stock (s)", "RS (s)", "RS / stock"]
                + ["stock peak MiB", "RS peak MiB"],
                rows,
            )
        )
    if data["loss"]:
        out.append("\n## Losses against the authors' loops (forward + backward)\n\n")
        rows = [
            [
                e["loss"],
                e["case"],
                f"{e['N']:.2g}",
                e["P"],
                _num(e["fast_ms"]),
                _num(e["loop_ms"]),
                _num(e["speedup"], "{:.1f}x"),
                _num(e.get("fast_peak_mib"), "{:.1f}"),
                _num(e.get("loop_peak_mib"), "{:.1f}"),
            ]
            for e in data["loss"]
        ]
        out.append(
            _table(
                ["loss", "case", "N", "P", "ours (ms)", "loop (ms)", "speed-up"]
                + ["ours peak MiB", "loop peak MiB"],
                rows,
            )
        )
    if data["launches"]:
        out.append("\n## Launches of one forward + backward\n\n")
        rows = [
            [
                e["loss"],
                f"{e['N']:.0e}",
                e["P"],
                e["regime"],
                e["path"],
                e["ops"],
                _num(e.get("kernels"), "{}"),
                e["host_reads"],
                _num(e.get("ms")),
            ]
            for e in data["launches"]
        ]
        out.append(
            _table(
                ["loss", "N", "P", "logits", "chunk sizes", "aten ops", "CUDA kernels"]
                + ["host reads", "ms"],
                rows,
            )
        )
    return "".join(out)


# ----------------------------------------------------------------------------------------------
# Smoke


def smoke_configs(tiny: bool):
    """The RS configs, relative to configs/."""
    pattern = "quick_schedules/rs_*_tiny.py" if tiny else "*/rs_*.py"
    paths = sorted(glob.glob(os.path.join(REPO, "configs", pattern)))
    paths = [p for p in paths if f"{os.sep}quick_schedules{os.sep}" not in p or tiny]
    return [os.path.relpath(p, os.path.join(REPO, "configs")) for p in paths]


def smoke_size(config: str, tiny: bool):
    if tiny:
        return 160, 160
    name = os.path.basename(config)
    for key, size in RECIPE_SIZES.items():
        if key in name:
            return size
    return 800, 1333


def build_model(config: str, device):
    """The config's model, randomly initialised (no weights are loaded), and its class count."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    _, num_classes = class_count_key(cfg)
    torch.manual_seed(0)
    return instantiate(cfg.model).to(device), int(num_classes or 1)


def smoke_one(config, device, amp: bool, iters: int, tiny: bool) -> dict:
    height, width = smoke_size(config, tiny)
    entry = {"config": config, "amp": amp, "height": height, "width": width, "iters": iters}
    start = time.perf_counter()
    try:
        model, num_classes = build_model(config, device)
        batch = BT.synthetic_batch(2, (height, width), min(num_classes, 80), device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        use_scaler = amp and device.type == "cuda"
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        model.train()
        last = None
        for it in range(iters):
            with EventStorage(it), torch.autocast(device.type, dtype=dtype, enabled=amp):
                losses = FiniteLossGuard(model)(batch)  # raises on a non-finite loss
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            last = float(total.detach())
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=amp):
            outputs = model([{"image": b["image"]} for b in batch])
        boxes = [o["instances"].pred_boxes.tensor for o in outputs]
        if not all(bool(torch.isfinite(b).all()) for b in boxes):
            raise FloatingPointError("inference gave non-finite boxes")
        entry.update(status="ok", last_loss=last, detections=sum(len(b) for b in boxes))
    except Exception as e:  # recorded, and the next config runs
        entry.update(status="FAILED", error=f"{type(e).__name__}: {e}")
        entry["traceback"] = traceback.format_exc()[-3000:]
    entry["seconds"] = time.perf_counter() - start
    return entry


def run_smoke(report: Report, args, device) -> None:
    for config in smoke_configs(args.tiny):
        report.add("smoke", smoke_one(config, device, True, args.smoke_iters, args.tiny))
        if os.path.basename(config) in NO_AMP_TOO:
            report.add("smoke", smoke_one(config, device, False, args.smoke_iters, args.tiny))
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# Training step


def step_pairs(tiny: bool):
    """(model name, RS config, stock config, input side or None) of every RS model with a stock
    twin: the two-stage models, the segmenters and the dense RS models (against RetinaNet)."""
    scale = "tiny" if tiny else "full"
    pairs = [(name, rs, stock, None) for name, (rs, stock) in BT.TWO_STAGE[scale].items()]
    pairs += [(name, rs, stock, size) for name, (rs, stock, size) in BT.SEGMENTERS[scale].items()]
    dense = BT.DENSE[scale]
    stock = next(iter(dense.values()))
    pairs += [(name, cfg, stock, None) for name, cfg in dense.items() if cfg != stock]
    return pairs


def peak_mib(model, optimizer, batch, device):
    """Peak GPU memory (MiB) of one training step; None on a CPU."""
    if device.type != "cuda":
        return None
    return H.cuda_peak_of(lambda: BT.step(model, optimizer, batch), device) / H.MIB


def run_step(report: Report, args, device) -> None:
    size = 160 if args.tiny else 800
    num_classes = 8 if args.tiny else 80
    for name, rs_cfg, stock_cfg, side in step_pairs(args.tiny):
        entry = {"model": name, "rs_config": rs_cfg, "stock_config": stock_cfg}
        try:
            batch = BT.synthetic_batch(2, side or size, num_classes, device)
            models = {
                "stock": BT.build(stock_cfg, device, num_classes),
                "rs": BT.build(rs_cfg, device, num_classes),
            }
            warmup = 1 if args.tiny else 2
            medians = BT.interleaved_medians(models, batch, device, args.step_repeats, warmup)
            entry.update(stock_s=medians["stock"], rs_s=medians["rs"])
            entry["ratio"] = medians["rs"] / medians["stock"]
            for key, (model, optimizer) in models.items():
                entry[f"{key}_peak_mib"] = peak_mib(model, optimizer, batch, device)
        except Exception as e:
            entry.update(stock_s=None, rs_s=None, ratio=None, error=f"{type(e).__name__}: {e}")
        report.add("step", entry)
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# Losses against the authors' loops


def loss_cases(tiny: bool):
    """(name, harness case): a dense head of one 800 x 1333 image and an R-CNN head of 2 images."""
    if tiny:
        return [
            ("dense, small", H.dense("trained", 100, 50_000)),
            ("R-CNN, small", H.rcnn("untrained", 32, images=1, rois=64, classes=8)),
        ]
    per_image = BT.dense_head_anchors(800, 1333, 3) * 80
    return [
        ("dense R-50-FPN, trained", H.dense("trained", 1500, per_image)),
        ("dense R-50-FPN, untrained", H.dense("untrained", 1500, per_image)),
        ("R-CNN 2x512x80", H.rcnn("untrained", 256, images=2, rois=512, classes=80)),
    ]


def _rs_loop(logits, targets, loc):
    import bench_rank_sort as BR

    x = logits.detach().requires_grad_(True)
    loss_rank, _ = BR.reference_loss(x, targets)
    loss_rank.backward()


def loss_calls(logits, targets, loc):
    """{loss: {"fast": call, "loop": call}} for RS, AP and aLRP on the same inputs."""
    import bench_ranking_losses as BL

    def bind(fn, *inputs):
        return lambda: fn(*inputs)

    return {
        "RS": {
            "fast": bind(ranking_loss_step, "RS", logits, targets, loc),
            "loop": bind(_rs_loop, logits, targets, loc),
        },
        "AP": {
            "fast": BL.call("ap-fast", logits, targets, loc),
            "loop": BL.call("ap-loop", logits, targets, loc),
        },
        "aLRP": {
            "fast": BL.call("alrp-fast", logits, targets, loc),
            "loop": BL.call("alrp-loop", logits, targets, loc),
        },
    }


def run_loss(report: Report, args, device) -> None:
    for case_name, case in loss_cases(args.tiny):
        logits, targets, loc = H.make_inputs(case, device)
        for loss, calls in loss_calls(logits, targets, loc).items():
            entry = {"loss": loss, "case": case_name, "N": case.num, "P": case.num_pos}
            try:
                for c in calls.values():  # warm-up
                    c()
                times = H.interleaved(calls, {"fast": args.loss_repeats, "loop": 2}, device)
                med = H.medians(times)
                entry.update(fast_ms=1e3 * med["fast"], loop_ms=1e3 * med["loop"])
                entry["speedup"] = med["loop"] / med["fast"]
                if device.type == "cuda":
                    for key, c in calls.items():
                        entry[f"{key}_peak_mib"] = H.cuda_peak_of(c, device) / H.MIB
            except Exception as e:
                entry.update(fast_ms=None, loop_ms=None, speedup=None)
                entry["error"] = f"{type(e).__name__}: {e}"
            report.add("loss", entry)
        del logits, targets, loc


# ----------------------------------------------------------------------------------------------
# Launches


def count_launches(loss: str, logits, targets, loc, device) -> dict:
    """Top-level aten ops, CUDA kernels, host reads and the median time of one forward + backward
    with the chunk sizes in force."""
    call = lambda: ranking_loss_step(loss, logits, targets, loc)  # noqa: E731
    call()  # warm-up
    ops, kernels = top_level_ops(call, cuda=device.type == "cuda")
    with host_reads() as reads:
        call()
    ms = 1e3 * H.medians(H.interleaved({"x": call}, {"x": 5}, device))["x"]
    return {"ops": sum(ops.values()), "kernels": kernels, "host_reads": len(reads), "ms": ms}


def run_launches(report: Report, args, device) -> None:
    paths = [("this device's", None)]
    if device.type == "cpu":
        paths.append(("GPU path's", ranking_core.BLOCKS["cuda"]))
    for num, num_pos in LAUNCH_SIZES:
        for regime in ("trained", "untrained"):
            logits, targets, loc = H.make_inputs(H.dense(regime, num_pos, num), device)
            for loss in ("RS", "AP", "aLRP"):
                for path, blocks in paths:
                    saved = ranking_core.BLOCKS["cpu"]
                    if blocks is not None:
                        ranking_core.BLOCKS["cpu"] = blocks
                    try:
                        counts = count_launches(loss, logits, targets, loc, device)
                    finally:
                        ranking_core.BLOCKS["cpu"] = saved
                    entry = {"loss": loss, "N": num, "P": num_pos, "regime": regime}
                    report.add("launches", {**entry, "path": path, **counts})


# ----------------------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder of gpu_check.json and gpu_check.md")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny configs and small loss cases")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, of {PARTS}")
    parser.add_argument(
        "--smoke-iters",
        type=int,
        default=None,
        help="training iterations per config (10; --tiny 2)",
    )
    parser.add_argument(
        "--step-repeats", type=int, default=None, help="timed steps per model (11; --tiny 3)"
    )
    parser.add_argument("--loss-repeats", type=int, default=9, help="timed calls of our losses")
    args = parser.parse_args(argv)
    args.smoke_iters = args.smoke_iters or (2 if args.tiny else 10)
    args.step_repeats = args.step_repeats or (3 if args.tiny else 11)
    args.only = [p for p in args.only.replace(" ", ",").split(",") if p]
    unknown = [p for p in args.only if p not in PARTS]
    if unknown or not args.only:
        parser.error(
            f"--only: unknown part(s) {unknown or '(none)'}; choose from {', '.join(PARTS)}"
        )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible to torch (use --device cpu --tiny)")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    H.tune_glibc_malloc()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": H.machine_line(device),
        "command": "python benchmarks/gpu_check.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "parts": args.only,
        "gpu_path_blocks": dataclasses.asdict(ranking_core.blocks_for(torch.device("cuda"))),
    }
    report = Report(args.out, meta)
    start = time.perf_counter()
    runners = {"smoke": run_smoke, "step": run_step, "loss": run_loss, "launches": run_launches}
    for part in PARTS:
        if part in args.only:
            t = time.perf_counter()
            runners[part](report, args, device)
            print(f"{part}: {time.perf_counter() - t:.0f} s", flush=True)
    report.data["meta"]["seconds"] = math.ceil(time.perf_counter() - start)
    report.write()
    print(f"report: {report.md_path}")
    return report.data


if __name__ == "__main__":
    main()
