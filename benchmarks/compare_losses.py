#!/usr/bin/env python
"""RS loss against the stock losses: tiny model pairs trained alike, evaluated on held-out data.

    python benchmarks/compare_losses.py                       # every pair, 3 seeds, 300 iterations
    python benchmarks/compare_losses.py --pairs mask_rcnn --seeds 1 --iters 300 --markdown
    python benchmarks/compare_losses.py --resume              # continue a partial run
    python benchmarks/compare_losses.py --jobs 2              # two trainings at a time
    python benchmarks/compare_losses.py --pairs fcos --candidate-opts optimizer.lr=0.005
                                                              # a variant of the RS model only

What is compared
    Each pair is two tiny configs of configs/quick_schedules/ (ResNet-18 with BN, 64-channel FPN,
    trained from scratch) that differ only in the loss: the stock Detectron2 model and its RS (or
    AP / aLRP) counterpart, with the same data, schedule, learning rate, iterations and seeds. The
    dense detectors are the exception: Detectron2 has no stock ATSS / PAA, so RS-ATSS / RS-PAA and
    the AP / aLRP ATSS models are compared with the stock RetinaNet and differ in assigner and head
    too (the "note" of those pairs). So are the SOLOv2 pairs: RS-SOLOv2 trains at 0.6 x the stock
    LR as the authors' released recipe does; ``solov2_released`` is RS-SOLOv2 with the released
    code's pairing of Dice qualities and mask-loss weights (``RSSOLOv2(pairing="released")``).
    SOLOv2 and YOLACT pairs are included when their configs exist.

How
    Every run trains through train_net.py (the CLI users run) on the generated shapes training
    split, on CPU, with ``train.seed`` = the seed; its final evaluation on the held-out split
    ``rs_shapes_val`` gives COCO AP (box, and mask for mask models), and oLRP (the RS paper's
    second metric, lower is better) is computed from the same detections with
    ``olrp_from_coco``. A baseline shared by several pairs (RetinaNet) is trained once per seed.
    The table shows the mean and the sample standard deviation over seeds, and the wall time per
    run (train_net.py's start, training and evaluation).

What it shows and does not
    Whether the RS heads learn at least as well as the stock heads on a small synthetic dataset,
    from scratch, on CPU, in a few hundred iterations, over a few seeds. It does not reproduce the
    paper's COCO numbers (pretrained R-50, 90k iterations of 16 images) and says nothing about how
    large the gain is there; a few seeds of a 40-image validation set leave an error of a few AP.

Output
    Every finished run is appended to ``--results`` (JSON, default output/compare_losses/
    results.json) as soon as it ends, so a partial run still makes a table; ``--resume`` keeps the
    runs found there and trains only the missing ones. Training folders and logs:
    ``--output``/<config>_s<seed>_i<iters>[.log].

Parallel runs
    ``--jobs N`` trains N runs at a time, each with the machine's cores shared out through
    ``OMP_NUM_THREADS`` (unless it is set): tiny models use several cores poorly, so this finishes
    sooner. Wall times are then measured under that sharing (each record keeps ``jobs``).
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "quick_schedules"

# name -> (baseline config, candidate config, note); configs relative to configs/quick_schedules/.
PAIRS = {
    "faster_rcnn": ("faster_rcnn_tiny", "rs_faster_rcnn_tiny", ""),
    "mask_rcnn": ("mask_rcnn_tiny", "rs_mask_rcnn_tiny", ""),
    "cascade_rcnn": ("cascade_rcnn_tiny", "rs_cascade_rcnn_tiny", ""),
    "retinanet": ("retinanet_tiny", "rs_retinanet_tiny", ""),
    "atss": ("retinanet_tiny", "rs_atss_tiny", "ATSS assigner and head vs RetinaNet's"),
    "paa": ("retinanet_tiny", "rs_paa_tiny", "PAA assigner and ATSS head vs RetinaNet's"),
    "fcos": ("fcos_tiny", "rs_fcos_tiny", "no centerness; towers without bias, a scale per level"),
    "fcos_atss": ("fcos_tiny", "rs_fcos_atss_tiny", "RS-FCOS with ATSS's assignment"),
    "ap_retinanet": ("retinanet_tiny", "ap_retinanet_tiny", ""),
    "alrp_retinanet": ("retinanet_tiny", "alrp_retinanet_tiny", ""),
    "ap_atss": ("retinanet_tiny", "ap_atss_tiny", "ATSS assigner and head vs RetinaNet's"),
    "alrp_atss": ("retinanet_tiny", "alrp_atss_tiny", "ATSS assigner and head vs RetinaNet's"),
    "alrp_faster_rcnn": ("faster_rcnn_tiny", "alrp_faster_rcnn_tiny", ""),
    "solov2": ("solov2_tiny", "rs_solov2_tiny", "RS at 0.6x the LR (the released recipe)"),
    "solov2_released": (
        "solov2_tiny",
        "rs_solov2_released_tiny",
        "RS at 0.6x the LR, the released code's pairing",
    ),
    "yolact": ("yolact_tiny", "rs_yolact_tiny", ""),
}
# Columns of the table: (result key, header); AP higher is better, oLRP lower is better.
METRICS = [
    ("bbox/AP", "box AP"),
    ("segm/AP", "mask AP"),
    ("bbox/oLRP", "box oLRP"),
    ("segm/oLRP", "mask oLRP"),
]
KEYS = [key for key, _ in METRICS]


def config_path(name):
    """configs/-relative path of a quick_schedules config name."""
    return f"{QUICK}/{name}.py"


def available_pairs():
    """The pairs whose two config files exist (SOLOv2 / YOLACT are added by name when present)."""
    return {
        name: pair
        for name, pair in PAIRS.items()
        if all(os.path.isfile(os.path.join(REPO, "configs", config_path(c))) for c in pair[:2])
    }


def run_key(config, seed, iters, opts=()):
    """What identifies a run in the results file."""
    return (config, int(seed), int(iters), tuple(opts))


def load_results(path):
    """The runs recorded in ``path`` (a list of dicts); [] when the file does not exist."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)["runs"]


def save_results(path, runs):
    """Write ``{"runs": runs}`` to ``path`` through a temporary file (never half-written)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"runs": runs}, f, indent=1)
    os.replace(tmp, path)


def final_ap(output_dir):
    """AP keys (``bbox/AP``, ``bbox/AP50``, ``segm/AP`` ...) of the last evaluation that
    train_net.py wrote to metrics.json, percent."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    evaluations = [r for r in records if any(k.startswith(("bbox/AP", "segm/AP")) for k in r)]
    if not evaluations:
        raise RuntimeError(f"no evaluation in {output_dir}/metrics.json")
    keep = ("AP", "AP50", "AP75")
    return {
        k: float(v)
        for k, v in evaluations[-1].items()
        if "/" in k and k.split("/")[1] in keep and k.split("/")[0] in ("bbox", "segm")
    }


def evaluate_olrp(config, results_dir, tasks):
    """oLRP and its components (percent, lower is better) of the detections that train_net.py's
    final evaluation saved in ``results_dir/coco_instances_results.json`` (COCO results format),
    against the config's test split, for each of ``tasks``."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from detectron2.config import LazyConfig
    from detectron2.data import MetadataCatalog

    from rs_detectron2.data import register_shapes
    from rs_detectron2.evaluation import olrp_from_coco

    register_shapes()
    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    json_file = MetadataCatalog.get(cfg.dataloader.test.dataset.names).json_file
    with open(os.path.join(results_dir, "coco_instances_results.json")) as f:
        detections = json.load(f)
    out = {}
    for task in tasks:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(json_file)  # olrp_from_coco annotates the ground truth in place
        res = olrp_from_coco(coco_gt, detections, task)
        for key in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN"):
            out[f"{task}/{key}"] = 100.0 * float(res[key])
    return out


def train_one(config, seed, iters, output_dir, log_path, opts=(), threads=None):
    """Train ``config`` for ``iters`` iterations with ``seed`` through train_net.py on CPU, then
    its final evaluation (AP; the detections are kept in ``output_dir/inference``); ``opts`` are
    further ``KEY=VALUE`` overrides, ``threads`` the child's ``OMP_NUM_THREADS`` (None: inherited).
    Returns the exit status; the output goes to ``log_path``."""
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)  # a run of this script that did not finish
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        "--config-file",
        os.path.join(REPO, "configs", config),
        f"train.max_iter={iters}",
        f"train.eval_period={iters}",
        f"train.checkpointer.period={iters}",
        f"train.log_period={max(1, min(20, iters // 10))}",
        f"train.output_dir={output_dir}",
        f"train.seed={seed}",
        "train.device=cpu",
        f"dataloader.evaluator.output_dir={os.path.join(output_dir, 'inference')}",
        *opts,
    ]
    with open(log_path, "w") as log:
        log.write("+ " + " ".join(cmd) + "\n")
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        return subprocess.run(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode


def train_run(config, seed, iters, output_root, opts=(), jobs=1):
    """Train one config with one seed, as one of ``jobs`` runs at a time (see
    :func:`threads_per_job`); returns the run's JSON record so far and its start time. Safe to call
    from several threads (it only waits on a subprocess)."""
    stem = os.path.splitext(os.path.basename(config))[0]
    if opts:  # runs of one config with other overrides must not share a folder
        stem += "_o" + hashlib.sha1(" ".join(opts).encode()).hexdigest()[:8]
    output_dir = os.path.join(output_root, f"{stem}_s{seed}_i{iters}")
    log_path = f"{output_dir}.log"
    os.makedirs(output_root, exist_ok=True)
    record = {"config": config, "seed": seed, "iters": iters, "opts": list(opts), "jobs": jobs}
    record["output_dir"] = output_dir
    start = time.time()
    code = train_one(config, seed, iters, output_dir, log_path, opts, threads_per_job(jobs))
    record["train_s"] = round(time.time() - start, 1)
    if code != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        record.update(status="failed", error=f"train_net.py exited with {code}: ...{tail}")
    return record, start


def evaluate_run(record, start):
    """Completes the record of a trained run with its AP and oLRP (see :func:`train_run`). Call it
    from the main thread only: :func:`evaluate_olrp` silences pycocotools by swapping sys.stdout,
    which would swallow what other threads print meanwhile."""
    if record.get("status") == "failed":
        return record
    metrics = final_ap(record["output_dir"])
    tasks = tuple(t for t in ("bbox", "segm") if f"{t}/AP" in metrics)
    inference = os.path.join(record["output_dir"], "inference")
    metrics.update(evaluate_olrp(record["config"], inference, tasks))
    record["wall_s"] = round(time.time() - start, 1)
    record.update(status="ok", metrics=metrics)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def threads_per_job(jobs):
    """``OMP_NUM_THREADS`` for each of ``jobs`` concurrent runs: the cores shared out (at least
    one each); None for a single job or when the user has set OMP_NUM_THREADS."""
    if jobs <= 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def mean_spread(values):
    """(mean, sample standard deviation or None for a single value) of a non-empty list."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fmt(values, digits=1):
    if not values:
        return "-"
    mean, spread = mean_spread(values)
    return f"{mean:.{digits}f}" if spread is None else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def summarise(runs, pairs, seeds, iters, opts=(), candidate_opts=()):
    """Table rows: per pair, the baseline, the candidate and their difference of means.

    ``opts`` are the overrides of every run, ``candidate_opts`` those added to the candidates'.
    Each row is a dict with ``pair``, ``model`` (config name or "difference"), ``n`` (finished
    runs), ``failed``, one value per METRICS key (list of per-seed values; for the difference
    row, the difference of means or None) and ``wall_s`` (per-seed wall times)."""
    done = {run_key(r["config"], r["seed"], r["iters"], r.get("opts", ())): r for r in runs}
    rows = []
    for name in pairs:
        base, cand, note = PAIRS[name]
        pair_rows = []
        for model, extra in ((base, ()), (cand, tuple(candidate_opts))):
            key_opts = (*opts, *extra)
            found = [done.get(run_key(config_path(model), s, iters, key_opts)) for s in seeds]
            ok = [r for r in found if r and r["status"] == "ok"]
            row = {
                "pair": name,
                "model": model + (f" ({' '.join(extra)})" if extra else ""),
                "n": len(ok),
                "failed": sum(1 for r in found if r and r["status"] != "ok"),
                "wall_s": [r["wall_s"] for r in ok],
            }
            for key, _ in METRICS:
                row[key] = [r["metrics"][key] for r in ok if key in r["metrics"]]
            pair_rows.append(row)
        diff = {"pair": name, "model": "difference", "n": None, "failed": 0, "wall_s": []}
        for key, _ in METRICS:
            a, b = pair_rows[0][key], pair_rows[1][key]
            diff[key] = mean_spread(b)[0] - mean_spread(a)[0] if a and b else None
        diff["note"] = note
        rows += pair_rows + [diff]
    return rows


def format_table(rows, markdown=False):
    """The rows of :func:`summarise` as a plain-text or markdown table (one string)."""
    headers = ["pair", "model", "runs"] + [h for _, h in METRICS] + ["s / run"]
    lines = []
    for row in rows:
        if row["model"] == "difference":
            # the second model minus the first; a note says what else differs in the pair
            label = "difference" + (f" (also: {row['note']})" if row["note"] else "")
            cells = ["", label, ""]
            for key, _ in METRICS:
                cells.append("-" if row[key] is None else f"{row[key]:+.1f}")
            cells.append("")
        else:
            runs = str(row["n"]) + (f" ({row['failed']} failed)" if row["failed"] else "")
            cells = [row["pair"], row["model"], runs]
            cells += [fmt(row[key]) for key, _ in METRICS] + [fmt(row["wall_s"], 0)]
        lines.append(cells)
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in lines]
    return "\n".join(out)


def parse_args(argv=None):
    pairs = available_pairs()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=list(pairs),
        metavar="PAIR",
        help=f"pairs to train, space- or comma-separated ({', '.join(pairs)})",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="N seeds per model: FIRST..FIRST+N-1 (N runs each)"
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first seed (train more seeds of an earlier run: --first-seed 1 --seeds 2)",
    )
    parser.add_argument("--iters", type=int, default=300, help="training iterations per run")
    parser.add_argument(
        "--output", default=os.path.join("output", "compare_losses"), help="training folders"
    )
    parser.add_argument(
        "--results", default=None, help="results JSON (default: OUTPUT/results.json)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs in the results file, train the rest"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at a time (cores shared out)"
    )
    parser.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="train_net.py overrides for every run (part of what identifies a run)",
    )
    parser.add_argument(
        "--candidate-opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides for the candidate (RS) models only, after --opts: a variant against the "
        "same baselines",
    )
    args = parser.parse_args(argv)
    args.pairs = list(dict.fromkeys(p for item in args.pairs for p in item.split(",") if p))
    unknown = [p for p in args.pairs if p not in pairs]
    if unknown or not args.pairs:
        parser.error(
            f"--pairs: unknown {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(pairs)}"
        )
    if args.seeds < 1 or args.first_seed < 0:
        parser.error(
            f"--seeds must be >= 1 and --first-seed >= 0, got {args.seeds}, {args.first_seed}"
        )
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    args.output = os.path.abspath(args.output)
    args.results = os.path.abspath(args.results or os.path.join(args.output, "results.json"))
    return args


def report_run(number, total, record):
    """One progress line for a finished run."""
    head = f"[{number}/{total}] {record['config']} seed {record['seed']}:"
    if record["status"] == "ok":
        ap = {k: round(v, 1) for k, v in record["metrics"].items() if k.endswith(("AP", "oLRP"))}
        print(f"{head} {record['wall_s']:.0f} s, {ap}", flush=True)
    else:
        print(f"{head} FAILED: {record['error'][-500:]}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    runs = load_results(args.results) if args.resume else []
    if not args.resume and os.path.isfile(args.results):
        print(f"starting a new results file at {args.results} (--resume keeps its runs)")
    save_results(args.results, runs)
    done = {run_key(r["config"], r["seed"], r["iters"], r.get("opts", ())) for r in runs}
    todo = []
    for name in args.pairs:
        base, cand, _ = PAIRS[name]
        for model, extra in ((base, ()), (cand, tuple(args.candidate_opts))):
            for seed in seeds:
                key = run_key(config_path(model), seed, args.iters, (*args.opts, *extra))
                if key not in done and key not in todo:
                    todo.append(key)
    print(f"{len(todo)} runs to train, {len(done)} found in {args.results}", flush=True)
    for i, (config, seed, iters, _) in enumerate(todo, start=1):
        print(f"[{i}/{len(todo)}] {config} seed {seed}, {iters} iterations", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(train_run, config, seed, iters, args.output, opts, args.jobs): i
            for i, (config, seed, iters, opts) in enumerate(todo, start=1)
        }
        for future in as_completed(futures):
            record = evaluate_run(*future.result())  # here, in the main thread
            runs.append(record)
            save_results(args.results, runs)  # this thread only: never two writers
            report_run(futures[future], len(todo), record)
    rows = summarise(runs, args.pairs, seeds, args.iters, args.opts, args.candidate_opts)
    print(
        f"\nTiny models on the shapes data, from scratch, CPU: {args.iters} iterations, "
        f"seeds {seeds}; evaluated on rs_shapes_val. AP: higher is better; oLRP: lower is "
        "better (percent); mean ± sample std over seeds.\n"
    )
    print(format_table(rows, markdown=args.markdown))
    print(f"\nresults: {args.results}")
    return rows


if __name__ == "__main__":
    main()
