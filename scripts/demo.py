#!/usr/bin/env python
"""End-to-end RS demo on CPU: generate the shapes dataset, train a tiny RS detector with
train_net.py, evaluate it, and write a loss plot and pictures of its predictions.

    python scripts/demo.py [--config configs/quick_schedules/rs_mask_rcnn_tiny.py] [--iters 300]

AP comes from the config's evaluator (COCO AP, run by train_net.py at the end of training); the
demo then evaluates the final model once more with ``OLRPEvaluator`` for oLRP, the paper's second
metric, and its components (lower is better), box and, for mask models, mask.

Everything goes to ``--output`` (default ``output/demo``): the training log and checkpoints of
train_net.py, ``metrics.json`` (Detectron2's per-iteration metrics), ``demo_results.json`` (final
AP and oLRP, the pictures' predictions), ``olrp/olrp_results.json`` (per-class oLRP and LRP-optimal
thresholds), ``losses.png`` and ``predictions_*.png``.
"""

import argparse
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


def load_trained_model(args):
    """The config and the final model of the training run, in eval mode on CPU."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    from rs_detectron2.data import register_shapes

    register_shapes()
    cfg = LazyConfig.load(os.path.join(REPO, args.config))
    model = instantiate(cfg.model).eval()
    DetectionCheckpointer(model).load(os.path.join(args.output, "model_final.pth"))
    return cfg, model


def evaluate_olrp(cfg, model, output_dir, tasks):
    """oLRP and its components (percent, lower is better) of ``model`` on the test split.

    Returns ``{"bbox/oLRP": ..., "bbox/oLRP_Loc": ..., ...}`` for each task of ``tasks``; the
    per-class values and LRP-optimal score thresholds go to ``output_dir/olrp_results.json``.
    """
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset

    from rs_detectron2.evaluation import OLRPEvaluator

    evaluator = OLRPEvaluator(
        cfg.dataloader.test.dataset.names, tasks=tasks, output_dir=output_dir, distributed=False
    )
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
    return {
        f"{task}/{key}": results[task][key]
        for task in tasks
        for key in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN")
    }


def draw_predictions(args, cfg, model, num_images=4, score_thresh=0.4):
    """Run the trained model on a few validation images and save them with Visualizer."""
    import cv2
    import torch

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data import transforms as T
    from detectron2.utils.visualizer import Visualizer

    dataset = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(dataset)
    resize = T.ResizeShortestEdge(160, 256)
    paths, described = [], []
    for i, record in enumerate(DatasetCatalog.get(dataset)[:num_images]):
        image = cv2.imread(record["file_name"])  # BGR, as the model expects
        h, w = image.shape[:2]
        resized = resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.transpose(2, 0, 1).copy())
        with torch.no_grad():
            out = model([{"image": tensor, "height": h, "width": w}])[0]["instances"]
        out = out[out.scores >= score_thresh].to("cpu")
        vis = Visualizer(image[:, :, ::-1], metadata, scale=2.0).draw_instance_predictions(out)
        path = os.path.join(args.output, f"predictions_{i}.png")
        vis.save(path)
        paths.append(path)
        names = [metadata.thing_classes[c] for c in out.pred_classes.tolist()]
        truth = [metadata.thing_classes[a["category_id"]] for a in record["annotations"]]
        described.append(
            {
                "image": os.path.basename(record["file_name"]),
                "ground_truth": sorted(truth),
                "predicted": [f"{n} {s:.2f}" for n, s in zip(names, out.scores.tolist())],
            }
        )
    return paths, described


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
    args = parser.parse_args()
    args.output = os.path.abspath(args.output)

    start = time.time()
    run_training(args)
    records = read_metrics(args.output)
    evaluation = [r for r in records if any(k.startswith(("bbox/", "segm/")) for k in r)]
    plot_path = os.path.join(args.output, "losses.png")
    plot_losses([r for r in records if "total_loss" in r], plot_path)
    ap = evaluation[-1] if evaluation else {}
    cfg, model = load_trained_model(args)
    tasks = tuple(t for t in ("bbox", "segm") if any(k.startswith(t + "/") for k in ap))
    olrp_dir = os.path.join(args.output, "olrp")
    olrp = evaluate_olrp(cfg, model, olrp_dir, tasks or ("bbox",))
    pictures, described = draw_predictions(args, cfg, model)
    summary = {
        "config": args.config,
        "iterations": args.iters,
        "minutes": round((time.time() - start) / 60, 1),
        "evaluation": ap,
        "olrp": olrp,
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
    for item in described:
        print(f"  {item['image']}: truth {item['ground_truth']} -> predicted {item['predicted']}")
    print(f"  output folder: {args.output}")
    print(f"  metrics:       {os.path.join(args.output, 'metrics.json')}")
    print(f"  results:       {results_path}")
    print(f"  oLRP details:  {os.path.join(olrp_dir, 'olrp_results.json')}")
    print(f"  training log:  {os.path.join(args.output, 'log.txt')}")
    print(f"  loss plot:     {plot_path}")
    print(f"  predictions:   {', '.join(pictures)}")
    print(f"  total time:    {summary['minutes']} min")


if __name__ == "__main__":
    main()
