#!/usr/bin/env python
"""End-to-end RS demo on CPU: generate the shapes dataset, train a tiny RS detector with
train_net.py, evaluate it, choose its score thresholds with oLRP and draw its predictions.

    python scripts/demo.py [--config configs/quick_schedules/rs_mask_rcnn_tiny.py] [--iters 300]

AP comes from the config's evaluator (COCO AP, run by train_net.py at the end of training). Then
``train_net.py --eval-only --lrp-thresholds-out`` finds each class's LRP-optimal score threshold on
the training split; ``LazyPredictor`` runs the model on the validation split for oLRP (the paper's
second metric) and its components (lower is better), box and, for mask models, mask, and for the
box TPs, false positives and misses at those per-class thresholds and at one global threshold
(``--global-threshold``, 0.5); ``python -m rs_detectron2.predict`` draws four validation images at
the per-class thresholds with their ground truth beside.

Everything goes to ``--output`` (default ``output/demo``): the training log and checkpoints of
train_net.py, ``metrics.json`` (Detectron2's per-iteration metrics), ``demo_results.json`` (final
AP and oLRP, the threshold comparison, the pictures' predictions), ``lrp_thresholds.json`` (the
per-class thresholds), ``losses.png`` and ``predictions/`` (pictures, ``detections.json``).
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_training(args):
    """Train and evaluate through the same CLI users run; returns the evaluation results."""
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        "--overwrite",
        "--config-file",
        args.config,
        f"train.max_iter={args.iters}",
        f"train.eval_period={args.iters}",
        f"train.checkpointer.period={args.iters}",
        f"train.log_period={max(1, min(20, args.iters // 10))}",
        f"train.output_dir={args.output}",
        f"train.seed={args.seed}",
        "train.device=cpu",
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def read_metrics(output):
    """Detectron2's metrics.json: one JSON object per logged iteration (and per evaluation)."""
    with open(os.path.join(output, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(records, path):
    """Plot every logged ``loss_*`` of ``records`` against the iteration into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k in r if k.startswith("loss_")})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key in keys:
        points = [(r["iteration"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=key)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("RS losses (box and mask are balanced to rank + sort)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_thresholds(args, weights):
    """Per-class LRP-optimal score thresholds of the trained model, fit on the training split by
    the command users run (``train_net.py --eval-only --lrp-thresholds-out``); returns the file.

    The training split, not the validation split the demo reports on, so that the comparison with
    one global threshold is not made on the images the thresholds were chosen on.
    """
    from detectron2.config import LazyConfig

    test_name = LazyConfig.load(os.path.join(REPO, args.config)).dataloader.test.dataset.names
    fit_name = test_name.replace("_val", "_train")
    path = os.path.join(args.output, "lrp_thresholds.json")
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        "--eval-only",
        "--lrp-thresholds-out",
        path,
        "--config-file",
        args.config,
        f"train.init_checkpoint={weights}",
        f"train.output_dir={os.path.join(args.output, 'thresholds_fit')}",
        f"dataloader.test.dataset.names={fit_name}",
        "train.device=cpu",
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return path


def predict_validation(args, weights):
    """Every detection of the trained model on the validation split (no score threshold), in COCO
    results format with the dataset's ids; returns (predictor, results)."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    from rs_detectron2.engine.prediction_run import instances_to_results
    from rs_detectron2.engine.predictor import LazyPredictor

    predictor = LazyPredictor(os.path.join(REPO, args.config), weights, device="cpu")
    records = DatasetCatalog.get(predictor.cfg.dataloader.test.dataset.names)
    results = []
    for start in range(0, len(records), 4):
        batch = records[start : start + 4]
        outputs = predictor([read_image(r["file_name"], format="BGR") for r in batch])
        for record, instances in zip(batch, outputs):
            results += instances_to_results(instances, record["image_id"], predictor.metadata)
    return predictor, results


def quiet_coco(json_file):
    """pycocotools' COCO of ``json_file``, without its progress prints."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(json_file)


def olrp_on_validation(json_file, results, tasks):
    """oLRP and its components (percent, lower is better) of ``results``, per task."""

    from rs_detectron2.evaluation import olrp_from_coco

    out = {}
    for task in tasks:
        res = olrp_from_coco(quiet_coco(json_file), results, task)
        for key in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN"):
            out[f"{task}/{key}"] = 100.0 * res[key]
    return out


def compare_thresholds(json_file, results, metadata, thresholds_file, global_threshold):
    """Box TPs, FPs and misses on the validation split (matched at IoU 0.5 as oLRP matches) at one
    global score threshold and at the per-class LRP-optimal thresholds of ``thresholds_file``."""

    from rs_detectron2.evaluation.thresholds import count_detection_errors, read_thresholds

    per_class = read_thresholds(thresholds_file, metadata.thing_classes).thresholds
    id_map = metadata.thing_dataset_id_to_contiguous_id
    by_dataset_id = {ds_id: per_class[k] for ds_id, k in id_map.items()}
    counts = {}
    for name, thresholds in (("global", global_threshold), ("olrp", by_dataset_id)):
        c = count_detection_errors(quiet_coco(json_file), results, thresholds)
        counts[name] = {key: c[key] for key in ("tp", "fp", "fn")}
    return counts


def draw_pictures(args, weights, thresholds_file, num_images=4):
    """Pictures of the first validation images, prediction (at the LRP-optimal thresholds) beside
    the ground truth, drawn by ``python -m rs_detectron2.predict``; returns its output folder."""
    from detectron2.config import LazyConfig

    dataset = LazyConfig.load(os.path.join(REPO, args.config)).dataloader.test.dataset.names
    folder = os.path.join(args.output, "predictions")
    cmd = [
        sys.executable,
        "-m",
        "rs_detectron2.predict",
        "--config-file",
        args.config,
        "--weights",
        weights,
        "--gt-dataset",
        dataset,
        "--limit",
        str(num_images),
        "--lrp-thresholds",
        thresholds_file,
        "--device",
        "cpu",
        "--output",
        folder,
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return folder


def describe_pictures(folder, metadata):
    """Per picture: the image, its detections (class and score) and the picture's path."""
    with open(os.path.join(folder, "images.json")) as f:
        images = json.load(f)["images"]
    with open(os.path.join(folder, "detections.json")) as f:
        results = json.load(f)
    id_map = metadata.thing_dataset_id_to_contiguous_id
    described = []
    for image in images:
        found = [r for r in results if r["image_id"] == image["id"]]
        described.append(
            {
                "image": os.path.basename(image["file_name"]),
                "picture": image["picture"],
                "predicted": [
                    f"{metadata.thing_classes[id_map[r['category_id']]]} {r['score']:.2f}"
                    for r in found
                ],
            }
        )
    return described


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default="configs/quick_schedules/rs_mask_rcnn_tiny.py",
        help="a tiny config on the shapes dataset, relative to the repository",
    )
    parser.add_argument("--iters", type=int, default=300, help="training iterations")
    parser.add_argument(
        "--output", default=os.path.join("output", "demo"), help="folder for every output"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument(
        "--global-threshold",
        type=float,
        default=0.5,
        help="the single score threshold the per-class oLRP thresholds are compared with",
    )
    args = parser.parse_args()
    args.output = os.path.abspath(args.output)

    start = time.time()
    run_training(args)
    records = read_metrics(args.output)
    evaluation = [r for r in records if any(k.startswith(("bbox/", "segm/")) for k in r)]
    plot_path = os.path.join(args.output, "losses.png")
    plot_losses([r for r in records if "total_loss" in r], plot_path)
    ap = evaluation[-1] if evaluation else {}
    tasks = tuple(t for t in ("bbox", "segm") if any(k.startswith(t + "/") for k in ap))
    weights = os.path.join(args.output, "model_final.pth")

    thresholds_file = fit_thresholds(args, weights)
    predictor, results = predict_validation(args, weights)
    json_file = predictor.metadata.json_file
    olrp = olrp_on_validation(json_file, results, tasks or ("bbox",))
    counts = compare_thresholds(
        json_file, results, predictor.metadata, thresholds_file, args.global_threshold
    )
    pictures = draw_pictures(args, weights, thresholds_file)
    described = describe_pictures(pictures, predictor.metadata)
    summary = {
        "config": args.config,
        "iterations": args.iters,
        "minutes": round((time.time() - start) / 60, 1),
        "evaluation": ap,
        "olrp": olrp,
        "thresholds": {"global": args.global_threshold, "file": thresholds_file, **counts},
        "predictions": described,
    }
    results_path = os.path.join(args.output, "demo_results.json")
    with open(results_path, "w") as f:
        json.dump(summary, f, indent=2)

    print("\n== rs_detectron2 demo ==")
    for task in tasks or ("bbox",):
        names = [m for m in ("AP", "AP50", "AP75") if f"{task}/{m}" in ap]
        row = [f"{m} {ap[f'{task}/{m}']:5.2f}" for m in names]
        for m in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN"):
            row.append(f"{m} {olrp[f'{task}/{m}']:5.2f}")
        print(f"  {task:4s}  " + "  ".join(row))
    print("  (AP: higher is better; oLRP and its components: lower is better; all in percent)")
    g, o = counts["global"], counts["olrp"]
    print(f"  validation boxes at IoU 0.5 ({g['tp'] + g['fn']} objects):")
    print(
        f"    one threshold {args.global_threshold:.2f}:           "
        f"TP {g['tp']:4d}  FP {g['fp']:4d}  misses {g['fn']:4d}"
    )
    print(f"    per-class oLRP thresholds: TP {o['tp']:4d}  FP {o['fp']:4d}  misses {o['fn']:4d}")
    fewer_fp, fewer_fn = g["fp"] - o["fp"], g["fn"] - o["fn"]
    print(
        f"    -> compared with {args.global_threshold:.2f}, the oLRP thresholds "
        f"{'remove' if fewer_fp >= 0 else 'add'} {abs(fewer_fp)} false positives and "
        f"{'remove' if fewer_fn >= 0 else 'add'} {abs(fewer_fn)} misses"
    )
    for item in described:
        print(f"  {item['image']}: predicted {item['predicted']}")
    print(f"  output folder: {args.output}")
    print(f"  metrics:       {os.path.join(args.output, 'metrics.json')}")
    print(f"  results:       {results_path}")
    print(f"  thresholds:    {thresholds_file}")
    print(f"  training log:  {os.path.join(args.output, 'log.txt')}")
    print(f"  loss plot:     {plot_path}")
    print(f"  predictions:   {', '.join(item['picture'] for item in described)}")
    print(f"  total time:    {summary['minutes']} min")


if __name__ == "__main__":
    main()
