#!/usr/bin/env python
"""Training-step time of RS detectors against their stock Detectron2 baselines, side by side.

Two-stage detectors (Faster, Mask and Cascade R-CNN): three models with the same backbone, input
and ground truth:

- ``stock``: the Detectron2 model as shipped (RPN samples 256 anchors, R-CNN 512 RoIs per image);
- ``stock-all``: the same stock model fed the same RoIs as the RS model (no anchor or RoI sampling),
  which isolates the cost of the loss;
- ``rs``: the RS model.

Dense detectors: the stock RetinaNet (focal loss, every anchor) against RS-RetinaNet, RS-ATSS and
RS-PAA, all with the same backbone and input (the ATSS / PAA heads have GN and 3 anchors per
location instead of 9, as in the paper).

Every model is timed over full training steps (forward, backward, SGD step) on one fixed synthetic
batch. The steps of the models compared in one table are interleaved (round-robin, the order
rotating every round) so that load from outside hits them all alike; the tables report medians
and ratios. The share of the RS step spent in the RS loss code (the heads' ``losses()``: target
building, RS, GIoU, balancing; and the mask loss) is measured in separate interleaved rounds with
wrappers, and for the dense models also the share of the anchor assignment (``label_anchors``).

Instance segmenters with meta-architectures of their own (SOLOv2, YOLACT): the stock model against
its RS version, same backbone and input (YOLACT at its fixed square size), with the RS loss share.

Last, the dense RS loss alone (forward + backward of ``rank_sort_loss``) is timed at the size of
an R-50-FPN dense head (3 anchors per location x 80 classes: 5.4e6 logits for one 800 x 1333
image; with ``--full``, the step's own 2 images of 800 x 800, 6.4e6) with 1500 positives, printed
beside the dense steps measured above.

    python benchmarks/bench_train_step.py                       # tiny CPU configs
    python benchmarks/bench_train_step.py --markdown            # the same, as markdown tables
    python benchmarks/bench_train_step.py --full --device cuda  # R-50-FPN at 800 px, 2 images

Timings on a shared CPU are noisy: compare ratios within one run, not across runs.
"""

import argparse
import functools
import math
import os
import statistics
import sys
import time

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from rs_detectron2.config import NO_SAMPLING
from rs_detectron2.engine import FiniteLossGuard
from rs_detectron2.losses import rank_sort_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two-stage pairs, name: (RS config, stock config), relative to configs/
TWO_STAGE = {
    "tiny": {
        "Faster R-CNN": (
            "quick_schedules/rs_faster_rcnn_tiny.py",
            "quick_schedules/faster_rcnn_tiny.py",
        ),
        "Mask R-CNN": (
            "quick_schedules/rs_mask_rcnn_tiny.py",
            "quick_schedules/mask_rcnn_tiny.py",
        ),
        "Cascade R-CNN": (
            "quick_schedules/rs_cascade_rcnn_tiny.py",
            "quick_schedules/cascade_rcnn_tiny.py",
        ),
    },
    "full": {
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
    },
}
# Dense models, name: config; the first is the baseline of the others.
DENSE = {
    "tiny": {
        "RetinaNet (stock)": "quick_schedules/retinanet_tiny.py",
        "RS-RetinaNet": "quick_schedules/rs_retinanet_tiny.py",
        "RS-ATSS": "quick_schedules/rs_atss_tiny.py",
        "RS-PAA": "quick_schedules/rs_paa_tiny.py",
    },
    "full": {
        "RetinaNet (stock)": "COCO-Detection/retinanet_R_50_FPN_1x.py",
        "RS-RetinaNet": "COCO-Detection/rs_retinanet_R_50_FPN_1x.py",
        "RS-ATSS": "COCO-Detection/rs_atss_R_50_FPN_1x.py",
        "RS-PAA": "COCO-Detection/rs_paa_R_50_FPN_1x.py",
    },
}
# Instance segmenters, name: (RS config, stock config, square input side or None for --size)
SEGMENTERS = {
    "tiny": {
        "SOLOv2": ("quick_schedules/rs_solov2_tiny.py", "quick_schedules/solov2_tiny.py", None),
        "YOLACT": ("quick_schedules/rs_yolact_tiny.py", "quick_schedules/yolact_tiny.py", 160),
    },
    "full": {
        "SOLOv2 R-101": (
            "COCO-InstanceSegmentation/rs_solov2_R_101_FPN_3x.py",
            "COCO-InstanceSegmentation/solov2_R_101_FPN_3x.py",
            None,
        ),
        "YOLACT R-50": (
            "COCO-InstanceSegmentation/rs_yolact_R_50_550_55e.py",
            "COCO-InstanceSegmentation/yolact_R_50_550_55e.py",
            550,  # its anchors are laid out for 550 x 550
        ),
    },
}
TARGET_TWO_STAGE = 1.1  # RS / stock without sampling
TARGET_SEGMENTER = 1.1  # RS / stock
TARGET_DENSE = 1.2  # RS / stock RetinaNet
FPN_STRIDES = (8, 16, 32, 64, 128)


def sync(device):
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config, device, num_classes, no_sampling=False):
    """Model and SGD optimiser from a config (relative to configs/), on ``device``.

    ``no_sampling`` lifts the RPN's and R-CNN's per-image sample sizes (two-stage models only).
    """
    cfg = LazyConfig.load(os.path.join(REPO, "configs", config))
    model_cfg = cfg.model
    if no_sampling:
        model_cfg.proposal_generator.batch_size_per_image = NO_SAMPLING
        model_cfg.roi_heads.batch_size_per_image = NO_SAMPLING
    # the one key that sets the whole model's class count (the configs keep Detectron2's links)
    if "roi_heads" in model_cfg:
        model_cfg.roi_heads.num_classes = num_classes
    else:
        model_cfg.num_classes = num_classes
    torch.manual_seed(0)
    model = instantiate(model_cfg).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    return model, optimizer


def synthetic_batch(num_images, size, num_classes, device, seed=0):
    """``num_images`` (3, height, width) images (``size``: a side, or ``(height, width)``) with 3-8
    random boxes each (box-shaped masks), identical for every model."""
    height, width = (size, size) if isinstance(size, int) else size
    extent = torch.tensor([width, height], dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        n = int(torch.randint(3, 9, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * extent * 0.7
        wh = (torch.rand(n, 2, generator=g) * 0.4 + 0.1) * extent
        boxes = torch.cat([xy, torch.minimum(xy + wh, extent - 1)], dim=1)
        masks = torch.zeros(n, height, width, dtype=torch.bool)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist()):
            m[y1:y2, x1:x2] = True
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (n,), generator=g)
        inst.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        batch.append({"image": image.to(device), "instances": inst.to(device)})
    return batch


def step(model, optimizer, batch):
    """One training step as train_net.py runs it: forward (through FiniteLossGuard, whose one host
    transfer also reads the heads' logged scalars), backward, SGD update."""
    with EventStorage(0):
        losses = FiniteLossGuard(model)(batch)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()


class SectionTimer:
    """Accumulates the wall time spent in chosen bound methods of a model's modules (and in the
    RS mask loss), by wrapping them; :meth:`close` restores everything.

    Args:
        model: the model to instrument.
        method: name of the method to wrap on every module whose class name starts with "RS"
            (``"losses"``: the RS loss code; ``"label_anchors"``: a dense model's assignment).
        device: synchronised before and after each call so that GPU time is attributed.
        with_mask_loss: also wrap ``rs_mask_head.rs_mask_loss``.
    """

    def __init__(self, model, method, device, with_mask_loss=False):
        self.total = 0.0
        self.device = device
        self._restore = []
        for module in model.modules():
            if type(module).__name__.startswith("RS") and hasattr(module, method):
                setattr(module, method, self._wrap(getattr(module, method)))
                self._restore.append((module, method, None))
        if with_mask_loss:
            from rs_detectron2.modeling.roi_heads import rs_mask_head

            original = rs_mask_head.rs_mask_loss
            rs_mask_head.rs_mask_loss = self._wrap(original)
            self._restore.append((rs_mask_head, "rs_mask_loss", original))

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
        for owner, name, original in self._restore:
            if original is None:
                delattr(owner, name)  # drop the instance attribute: the class method is back
            else:
                setattr(owner, name, original)


def interleaved_medians(models, batch, device, repeats, warmup):
    """Median step time (s) of each model, timing their steps round-robin.

    Args:
        models: dict label -> (model, optimizer).
    Returns:
        dict label -> median seconds over ``repeats`` steps.
    """
    labels = list(models)
    for _ in range(warmup):
        for label in labels:
            step(*models[label], batch)
    times = {label: [] for label in labels}
    for r in range(repeats):
        shift = r % len(labels)
        for label in labels[shift:] + labels[:shift]:
            sync(device)
            start = time.perf_counter()
            step(*models[label], batch)
            sync(device)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}


def interleaved_shares(models, methods, batch, device, repeats):
    """Fraction of each model's step spent in the wrapped methods (separate rounds, interleaved).

    Args:
        models: dict label -> (model, optimizer), RS models only.
        methods: the method names to time separately, e.g. ("losses", "label_anchors").
    Returns:
        dict label -> dict method -> share of the median step (median per-step section time
        divided by the median step time of these rounds).
    """
    timers, opened = {}, []
    for label, (model, _) in models.items():
        timers[label] = {}
        for m in methods:
            has_mask = getattr(getattr(model, "roi_heads", None), "mask_on", False)
            with_mask = m == "losses" and has_mask
            timers[label][m] = SectionTimer(model, m, device, with_mask_loss=with_mask)
            opened.append(timers[label][m])
    steps = {label: [] for label in models}
    sections = {label: {m: [] for m in methods} for label in models}
    labels = list(models)
    try:
        for r in range(repeats):
            shift = r % len(labels)
            for label in labels[shift:] + labels[:shift]:
                before = {m: t.total for m, t in timers[label].items()}
                sync(device)
                start = time.perf_counter()
                step(*models[label], batch)
                sync(device)
                steps[label].append(time.perf_counter() - start)
                for m, t in timers[label].items():
                    sections[label][m].append(t.total - before[m])
    finally:
        for t in reversed(opened):  # wrappers of a shared function unwind in reverse order
            t.close()
    return {
        label: {
            m: statistics.median(sections[label][m]) / statistics.median(steps[label])
            for m in methods
        }
        for label in models
    }


def bench_two_stage(name, rs_cfg, stock_cfg, args, device):
    """One row of the two-stage table: stock, stock without sampling and RS, interleaved."""
    batch = synthetic_batch(args.images, args.size, args.num_classes, device)
    models = {
        "stock": build(stock_cfg, device, args.num_classes),
        "stock-all": build(stock_cfg, device, args.num_classes, no_sampling=True),
        "rs": build(rs_cfg, device, args.num_classes),
    }
    row = interleaved_medians(models, batch, device, args.repeats, args.warmup)
    share = interleaved_shares({"rs": models["rs"]}, ("losses",), batch, device, args.share_repeats)
    row["loss_share"] = share["rs"]["losses"]
    row["model"] = name
    return row


def bench_segmenter(name, rs_cfg, stock_cfg, size, args, device):
    """One row of the instance-segmenter table: stock and RS, interleaved, and the RS loss share."""
    batch = synthetic_batch(args.images, size or args.size, args.num_classes, device)
    models = {
        "stock": build(stock_cfg, device, args.num_classes),
        "rs": build(rs_cfg, device, args.num_classes),
    }
    row = interleaved_medians(models, batch, device, args.repeats, args.warmup)
    share = interleaved_shares({"rs": models["rs"]}, ("losses",), batch, device, args.share_repeats)
    row["loss_share"] = share["rs"]["losses"]
    row["model"] = name
    row["size"] = size or args.size
    return row


def bench_dense(configs, args, device):
    """The dense table: every model's median step; shares of the RS models' loss and assignment."""
    batch = synthetic_batch(args.images, args.size, args.num_classes, device)
    models = {name: build(cfg, device, args.num_classes) for name, cfg in configs.items()}
    medians = interleaved_medians(models, batch, device, args.repeats, args.warmup)
    rs_models = {k: v for k, v in models.items() if k.startswith("RS")}
    shares = interleaved_shares(
        rs_models, ("losses", "label_anchors"), batch, device, args.share_repeats
    )
    num_anchors = {}
    for name, (model, _) in models.items():
        with torch.no_grad():
            images = model.preprocess_image(batch)
            features = model.backbone(images.tensor)
            anchors = model.anchor_generator([features[f] for f in model.head_in_features])
        num_anchors[name] = sum(len(a) for a in anchors)
    return medians, shares, num_anchors


def dense_head_anchors(height, width, anchors_per_location=3, strides=FPN_STRIDES):
    """Anchors of one image of a P3-P7 dense head (feature maps of ceil(side / stride))."""
    return anchors_per_location * sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)


def synthetic_dense_targets(num_logits_rows, num_classes, num_pos, kind, device, seed=0):
    """Logits and RS targets of a dense head, flattened images x anchors x classes.

    ``kind == "trained"``: negatives ~ N(-6, 1.5) (background probabilities mostly < 1e-2),
    positives ~ N(-1, 1.5); ``kind == "init"``: everything ~ N(-4.6, 0.2) (the prior bias at the
    start of training: every negative is within delta of the positives, the loss's worst case).
    Positives are ``num_pos`` random (anchor, class) entries with IoU targets ~ U(0.3, 0.95).
    """
    g = torch.Generator().manual_seed(seed)
    n = num_logits_rows * num_classes
    if kind == "trained":
        logits = torch.randn(n, generator=g) * 1.5 - 6.0
    else:
        logits = torch.randn(n, generator=g) * 0.2 - 4.6
    targets = torch.zeros(n)
    pos = torch.randperm(n, generator=g)[:num_pos]
    targets[pos] = torch.rand(num_pos, generator=g) * 0.65 + 0.3
    if kind == "trained":
        logits[pos] = torch.randn(num_pos, generator=g) * 1.5 - 1.0
    return logits.to(device), targets.to(device)


def time_rs_loss_alone(logits, targets, device, repeats):
    """Median seconds of one RS loss forward + backward on fixed logits / targets."""
    times = []
    for _ in range(repeats + 1):  # the first call is a warm-up
        x = logits.detach().requires_grad_(True)
        sync(device)
        start = time.perf_counter()
        rank, _ = rank_sort_loss(x, targets, 0.5)
        rank.backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def print_table(headers, rows, markdown):
    """A table as markdown or as aligned plain text."""
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(flush=True)


def load_line():
    """The machine's load averages, to judge how much outside load the timings saw."""
    one, five, fifteen = os.getloadavg()
    cpus = os.cpu_count()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min), {cpus} CPUs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--full", action="store_true", help="R-50-FPN COCO configs at 800 px")
    parser.add_argument("--images", type=int, default=None, help="images per batch")
    parser.add_argument("--size", type=int, default=None, help="square image side in pixels")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=11, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--share-repeats", type=int, default=5, help="steps for the loss shares")
    parser.add_argument("--loss-repeats", type=int, default=2, help="calls of the loss alone")
    parser.add_argument("--loss-positives", type=int, default=1500, help="positives, loss alone")
    parser.add_argument(
        "--models", default="", help="comma-separated substrings of table rows to run (default all)"
    )
    parser.add_argument("--skip-loss-alone", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    scale = "full" if args.full else "tiny"
    args.images = args.images or (2 if args.full else 4)
    args.size = args.size or (800 if args.full else 160)
    args.num_classes = args.num_classes or (80 if args.full else 8)
    selected = [s.strip().lower() for s in args.models.split(",") if s.strip()]

    def wanted(name):
        return not selected or any(s in name.lower() for s in selected)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} threads")
    print(f"start: {load_line()}")
    print(
        f"{'R-50-FPN' if args.full else 'tiny (R-18 BN, 64-ch FPN)'} configs, "
        f"{args.images} images of {args.size}x{args.size}, {args.num_classes} classes; "
        f"median of {args.repeats} interleaved steps (forward + backward + SGD) after "
        f"{args.warmup} warm-up steps; shares over {args.share_repeats} more steps\n",
        flush=True,
    )

    rows = []
    for model_name, (rs_cfg, stock_cfg) in TWO_STAGE[scale].items():
        if not wanted(model_name):
            continue
        r = bench_two_stage(model_name, rs_cfg, stock_cfg, args, device)
        rows.append(
            [
                r["model"],
                f"{r['stock']:.3f}",
                f"{r['stock-all']:.3f}",
                f"{r['rs']:.3f}",
                f"{r['rs'] / r['stock-all']:.2f}x",
                f"{r['rs'] / r['stock']:.2f}x",
                f"{100 * r['loss_share']:.0f}%",
            ]
        )
        print(f"  done {model_name}: {load_line()}", flush=True)
    if rows:
        print(f"Two-stage (target: RS / no sampling <= {TARGET_TWO_STAGE}x)")
        print_table(
            [
                "model",
                "stock (s)",
                "stock, no sampling (s)",
                "RS (s)",
                "RS / no sampling",
                "RS / stock",
                "RS loss share",
            ],
            rows,
            args.markdown,
        )

    rows = []
    for model_name, (rs_cfg, stock_cfg, size) in SEGMENTERS[scale].items():
        if not wanted(model_name):
            continue
        r = bench_segmenter(model_name, rs_cfg, stock_cfg, size, args, device)
        rows.append(
            [
                r["model"],
                f"{r['size']}x{r['size']}",
                f"{r['stock']:.3f}",
                f"{r['rs']:.3f}",
                f"{r['rs'] / r['stock']:.2f}x",
                f"{100 * r['loss_share']:.0f}%",
            ]
        )
        print(f"  done {model_name}: {load_line()}", flush=True)
    if rows:
        print(f"Instance segmenters (target: RS / stock <= {TARGET_SEGMENTER}x)")
        print_table(
            ["model", "input", "stock (s)", "RS (s)", "RS / stock", "RS loss share"],
            rows,
            args.markdown,
        )

    dense_cfgs = {k: v for k, v in DENSE[scale].items() if k.startswith("RetinaNet") or wanted(k)}
    dense_step = None
    if len(dense_cfgs) > 1:
        medians, shares, num_anchors = bench_dense(dense_cfgs, args, device)
        base_name = next(iter(dense_cfgs))
        base = medians[base_name]
        rows = []
        for name, t in medians.items():
            share = shares.get(name)
            rows.append(
                [
                    name,
                    str(num_anchors[name] // args.images),
                    f"{t:.3f}",
                    f"{t / base:.2f}x",
                    f"{100 * share['losses']:.0f}%" if share else "-",
                    f"{100 * share['label_anchors']:.0f}%" if share else "-",
                ]
            )
        dense_step = {k: v for k, v in medians.items() if k.startswith("RS")}
        print(f"  done dense: {load_line()}", flush=True)
        print(f"Dense (target: RS / stock RetinaNet <= {TARGET_DENSE}x)")
        print_table(
            [
                "model",
                "anchors / image",
                "step (s)",
                "vs RetinaNet",
                "RS loss share",
                "assignment share",
            ],
            rows,
            args.markdown,
        )

    if not args.skip_loss_alone:
        # An R-50-FPN dense head with 3 anchors per location (RS-ATSS / RS-PAA) and 80 classes:
        # with --full the step's own batch (2 images of 800 x 800: 6.4e6 logits), else one image
        # of 800 x 1333 (5.4e6 logits).
        images, height, width = (args.images, args.size, args.size) if args.full else (1, 800, 1333)
        per_image = dense_head_anchors(height, width, 3)
        classes = 80
        rows = []
        for kind in ("trained", "init"):
            logits, targets = synthetic_dense_targets(
                images * per_image, classes, args.loss_positives, kind, device
            )
            t = time_rs_loss_alone(logits, targets, device, args.loss_repeats)
            relevant = int((logits >= logits[targets > 0].min() - 0.5).sum())
            row = [kind, f"{logits.numel():.2e}", str(args.loss_positives), f"{relevant:.2e}"]
            row.append(f"{t:.3f}")
            for step_time in (dense_step or {}).values():
                row.append(f"{t / step_time:.2f}x")
            rows.append(row)
            del logits, targets
        print(
            f"Dense RS loss alone (forward + backward) at R-50-FPN size: {images} image(s) of "
            f"{height}x{width}, {per_image} anchors each x {classes} classes, delta 0.5, beside "
            f"the dense steps measured above ({'same batch' if args.full else 'tiny configs'})"
        )
        print_table(
            ["logit distribution", "logits", "positives", "relevant negatives", "loss (s)"]
            + [f"loss / {n} step" for n in (dense_step or {})],
            rows,
            args.markdown,
        )
    print(f"end: {load_line()}")


if __name__ == "__main__":
    sys.exit(main())
