#!/usr/bin/env python
"""Training-step time of RS detectors against their stock Detectron2 baselines, side by side.

For each detector three models are built with the same backbone, input and ground truth:

- ``stock``: the Detectron2 model as shipped (RPN samples 256 anchors, R-CNN 512 RoIs per image);
- ``stock-all``: the same stock model fed the same RoIs as the RS model (no anchor or RoI sampling),
  which isolates the cost of the loss;
- ``rs``: the RS model.

Each is timed over full training steps (forward, backward, SGD step) on one fixed synthetic batch;
the table reports medians, the ratios rs / stock-all and rs / stock, and the share of the RS step
spent inside the RS loss code (the heads' ``losses()`` and the mask loss, measured with wrappers).

    python benchmarks/bench_train_step.py                    # tiny CPU configs
    python benchmarks/bench_train_step.py --full --device cuda   # R-50-FPN at 800 px, 2 images

Timings on a shared CPU are noisy: compare ratios within one run, not across runs.
"""

import argparse
import functools
import os
import statistics
import sys
import time

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (RS config, stock config), relative to configs/
TINY = {
    "Faster R-CNN": ("quick_schedules/rs_faster_rcnn_tiny.py", "quick_schedules/faster_rcnn_tiny.py"),
    "Mask R-CNN": ("quick_schedules/rs_mask_rcnn_tiny.py", "quick_schedules/mask_rcnn_tiny.py"),
    "Cascade R-CNN": (
        "quick_schedules/rs_cascade_rcnn_tiny.py",
        "quick_schedules/cascade_rcnn_tiny.py",
    ),
}
FULL = {
    "Faster R-CNN": (
        "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py",
        "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    ),
    "Mask R-CNN": (
        "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x.py",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
    ),
    "Cascade R-CNN": (
        "COCO-Detection/rs_cascade_rcnn_R_50_FPN_1x.py",
        "COCO-Detection/cascade_rcnn_R_50_FPN_1x.py",
    ),
}
NO_SAMPLING = 1_000_000_000


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config, device, num_classes, no_sampling=False):
    """Model and SGD optimiser from a config (relative to configs/), on ``device``."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    if no_sampling:
        cfg.model.proposal_generator.batch_size_per_image = NO_SAMPLING
        cfg.model.roi_heads.batch_size_per_image = NO_SAMPLING
    if "roi_heads" in cfg.model:
        cfg.model.roi_heads.num_classes = num_classes
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    return model, optimizer


def synthetic_batch(num_images, size, num_classes, device, seed=0):
    """Images with 3-8 random boxes each (box-shaped masks), identical for every model."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        n = int(torch.randint(3, 9, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * size * 0.7
        wh = (torch.rand(n, 2, generator=g) * 0.4 + 0.1) * size
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], dim=1)
        masks = torch.zeros(n, size, size, dtype=torch.bool)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist()):
            m[y1:y2, x1:x2] = True
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
        inst.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        batch.append({"image": image.to(device), "instances": inst.to(device)})
    return batch


def step(model, optimizer, batch):
    with EventStorage(0):
        losses = model(batch)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()


class LossTimer:
    """Accumulates wall time spent in the RS loss code of a model (wrapped bound methods)."""

    def __init__(self, model, device):
        self.total = 0.0
        self.device = device
        for module in model.modules():
            if type(module).__name__.startswith("RS") and hasattr(module, "losses"):
                module.losses = self._wrap(module.losses)
        from rs_detectron2.modeling.roi_heads import rs_mask_head

        self._mask_module = rs_mask_head
        self._mask_orig = rs_mask_head.rs_mask_loss
        rs_mask_head.rs_mask_loss = self._wrap(self._mask_orig)

    def _wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.total += time.perf_counter() - start
            return out

        return timed

    def close(self):
        self._mask_module.rs_mask_loss = self._mask_orig


def median_step(model, optimizer, batch, device, repeats, warmup):
    for _ in range(warmup):
        step(model, optimizer, batch)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step(model, optimizer, batch)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_pair(name, rs_cfg, stock_cfg, args, device):
    batch = synthetic_batch(args.images, args.size, args.num_classes, device)
    row = {"model": name}
    for label, cfg, no_sampling in (
        ("stock", stock_cfg, False),
        ("stock-all", stock_cfg, True),
        ("rs", rs_cfg, False),
    ):
        model, optimizer = build(cfg, device, args.num_classes, no_sampling)
        row[label] = median_step(model, optimizer, batch, device, args.repeats, args.warmup)
        if label == "rs":
            timer = LossTimer(model, device)
            for _ in range(args.repeats):
                step(model, optimizer, batch)
            timer.close()
            row["loss_share"] = timer.total / args.repeats / row["rs"]
        del model, optimizer
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--full", action="store_true", help="R-50-FPN COCO configs at 800 px")
    parser.add_argument("--images", type=int, default=None, help="images per batch")
    parser.add_argument("--size", type=int, default=None, help="square image side in pixels")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="", help="comma-separated substrings to select")
    args = parser.parse_args()

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    pairs = FULL if args.full else TINY
    args.images = args.images or (2 if args.full else 4)
    args.size = args.size or (800 if args.full else 160)
    args.num_classes = args.num_classes or (80 if args.full else 8)
    selected = [s.strip() for s in args.models.split(",") if s.strip()]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} threads")
    print(
        f"{'R-50-FPN' if args.full else 'tiny (R-18 BN, 64-ch FPN)'} configs, "
        f"{args.images} images of {args.size}x{args.size}, {args.num_classes} classes, "
        f"median of {args.repeats} steps (forward + backward + SGD step)\n"
    )
    print("| model | stock (s) | stock, no sampling (s) | RS (s) | RS / no-sampling | RS / stock "
          "| RS loss share |")
    print("|---|---|---|---|---|---|---|")
    for model_name, (rs_cfg, stock_cfg) in pairs.items():
        if selected and not any(s.lower() in model_name.lower() for s in selected):
            continue
        r = bench_pair(model_name, rs_cfg, stock_cfg, args, device)
        print(
            f"| {r['model']} | {r['stock']:.3f} | {r['stock-all']:.3f} | {r['rs']:.3f} "
            f"| {r['rs'] / r['stock-all']:.2f}x | {r['rs'] / r['stock']:.2f}x "
            f"| {100 * r['loss_share']:.0f}% |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
