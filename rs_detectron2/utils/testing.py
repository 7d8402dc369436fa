"""Test utilities of rs_detectron2, importable from the package (as Detectron2 keeps its own in
``detectron2.utils.testing``): the reference losses of :mod:`rs_detectron2.utils.reference`
(re-exported here), tiny model inputs, an evaluation check, the worker functions of the
multi-process tests and the runner of ``train_net.py`` that end-to-end tests share (tests never
import each other or ``train_net``).
"""

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Callable, Optional, Tuple

import torch
import torch.distributed as dist

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import annotations_to_instances
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from ..losses import alrp_loss, ap_loss, rank_sort_loss
from ..model_zoo import get_config
from .reference import (
    EPS,
    reference_primary_terms,
    reference_rank_sort,
    step,
)

__all__ = [
    "EPS",
    "BATCH_OBJECTS",
    "REPO",
    "PoolModel",
    "assert_zero_losses_still_in_graph",
    "batch",
    "build_tiny",
    "draw_qualities",
    "ddp_pool_worker",
    "evaluate_ground_truth",
    "global_pool_loss_worker",
    "grad_sum",
    "host_reads",
    "make_image",
    "loss_snapshot",
    "model_snapshot",
    "named_init_",
    "read_metrics",
    "reference_primary_terms",
    "reference_rank_sort",
    "run_train_net",
    "ranking_loss_step",
    "step",
    "top_level_ops",
    "train_net_cmd",
    "train_step",
]

# ----------------------------------------------------------------------------------------------
# Random loss inputs


def draw_qualities(kind: str, num: int, generator: torch.Generator) -> torch.Tensor:
    """(num,) float64 positive targets of a random test case: ``"cont"`` uniform in (0, 1],
    ``"quant"`` multiples of 0.25 (many ties), ``"ones"`` all 1.0 (no sorting error)."""
    if kind == "cont":
        return 1 - torch.rand(num, generator=generator, dtype=torch.float64)
    if kind == "quant":
        return torch.randint(1, 5, (num,), generator=generator).to(torch.float64) / 4
    if kind == "ones":
        return torch.ones(num, dtype=torch.float64)
    raise ValueError(f"unknown kind of targets {kind!r}")


# ----------------------------------------------------------------------------------------------
# Tiny model inputs


# Ground truth of the three 128 x 128 images of `batch`: (boxes XYXY, class ids in 0..7).
BATCH_OBJECTS = [
    ([[10, 12, 70, 80], [60, 40, 120, 110]], [1, 3]),
    ([[30, 30, 90, 100]], [5]),
    ([[5, 5, 50, 40], [70, 70, 125, 125], [20, 80, 60, 120]], [0, 7, 2]),
]


def build_tiny(config_name, seed=0):
    """The model of ``configs/quick_schedules/<config_name>``, seeded, in training mode."""
    torch.manual_seed(seed)
    cfg = get_config(f"quick_schedules/{config_name}")
    model = instantiate(cfg.model)
    model.train()
    return model


def make_image(height, width, boxes, classes, seed, masks=False):
    """A batched-input dict: random uint8 image, GT boxes (XYXY) and classes; with ``masks``, also
    box-shaped ``gt_masks``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 255, (3, height, width), generator=g, dtype=torch.uint8)
    inst = Instances((height, width))
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    if masks:
        bits = torch.zeros((len(boxes), height, width), dtype=torch.bool)
        for m, (x1, y1, x2, y2) in zip(bits, boxes.round().long().tolist(), strict=True):
            m[y1:y2, x1:x2] = True
        inst.gt_masks = BitMasks(bits)
    return {"image": image, "instances": inst, "height": height, "width": width}


def batch(num_empty=0, masks=False):
    """The three images of ``BATCH_OBJECTS``; the first ``num_empty`` of them without any GT."""
    inputs = []
    for i, (boxes, classes) in enumerate(BATCH_OBJECTS):
        if i < num_empty:
            boxes, classes = [], []
        inputs.append(make_image(128, 128, boxes, classes, seed=i, masks=masks))
    return inputs


def train_step(model, inputs):
    """One forward + backward of the training losses; returns (losses, EventStorage)."""
    with EventStorage(0) as storage:
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses, storage


def grad_sum(module):
    """Sum of the absolute gradients of ``module``'s parameters (0 when none has a gradient)."""
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def assert_zero_losses_still_in_graph(losses, modules):
    """For a batch without any positive: every loss is exactly 0, yet the backward pass reached
    every parameter of ``modules`` (dict name -> module), i.e. the losses stayed in the graph."""
    for key, value in losses.items():
        assert float(value) == 0.0, key
    for key, module in modules.items():
        for p in module.parameters():
            assert p.grad is not None, f"{key} fell out of the graph"


# ----------------------------------------------------------------------------------------------
# Evaluation


def evaluate_ground_truth(evaluator, dataset_name):
    """Feed ``evaluator`` the ground truth of ``dataset_name`` as predictions (score 1, boxes and
    bitmasks) and return ``evaluator.evaluate()``: a correct pipeline scores about 100 AP."""
    evaluator.reset()
    for d in DatasetCatalog.get(dataset_name):
        size = (d["height"], d["width"])
        gt = annotations_to_instances(d["annotations"], size, mask_format="bitmask")
        pred = Instances(
            size,
            pred_boxes=gt.gt_boxes,
            scores=torch.ones(len(gt)),
            pred_classes=gt.gt_classes,
            pred_masks=gt.gt_masks.tensor,
        )
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": pred}])
    return evaluator.evaluate()


# ----------------------------------------------------------------------------------------------
# Workers of the multi-process tests (Gloo on CPU). Each joins a process group, computes
# something and saves its results with torch.save to ``out_dir/rank{r}.pt``.


def _init(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def global_pool_loss_worker(rank, world, init_file, out_dir, logits, targets, bounds, delta):
    """Rank ``rank`` takes ``logits[bounds[rank]:bounds[rank+1]]`` (and its targets) and computes
    the global-pool loss; saves the loss values and the gradient of its slice."""
    _init(rank, world, init_file)
    try:
        lo, hi = bounds[rank], bounds[rank + 1]
        mine = logits[lo:hi].clone().requires_grad_(True)
        loss_rank, loss_sort = rank_sort_loss(mine, targets[lo:hi], delta, pool="global")
        loss_rank.backward()
        torch.save(
            {"rank": loss_rank.detach(), "sort": loss_sort, "grad": mine.grad},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


class PoolModel(torch.nn.Module):
    """Tiny scorer: features (n, d) -> logits (n, k); the thing DDP wraps in the tests."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.fc = torch.nn.Linear(d, k)

    def forward(self, x):
        return self.fc(x)


def ddp_pool_worker(rank, world, init_file, out_dir, state, feats, targets, bounds, pool):
    """DDP over :class:`PoolModel` loaded from ``state``; rank ``rank`` scores its slice of the
    batch, backpropagates loss_rank with the given ``pool`` and saves the averaged parameter
    grads."""
    _init(rank, world, init_file)
    try:
        model = PoolModel(feats.shape[1], targets.shape[1])
        model.load_state_dict(state)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        lo, hi = bounds[rank], bounds[rank + 1]
        loss_rank, _ = rank_sort_loss(ddp(feats[lo:hi]), targets[lo:hi], pool=pool)
        loss_rank.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        torch.save(
            {"loss": loss_rank.detach(), "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt")
        )
    finally:
        dist.destroy_process_group()


def ranking_family_global_pool_worker(
    rank, world, init_file, out_dir, logits, targets, loc_errors, bounds, delta
):
    """Rank ``rank`` takes ``logits[bounds[rank]:bounds[rank+1]]`` (its targets, and the
    localisation errors of its positives) and computes the global-pool AP and aLRP losses; saves
    the values and the gradients of its slices."""
    from ..losses import alrp_loss, ap_loss

    _init(rank, world, init_file)
    try:
        lo, hi = bounds[rank], bounds[rank + 1]
        first = int((targets[:lo] > 0).sum())
        count = int((targets[lo:hi] > 0).sum())
        mine = logits[lo:hi].clone().requires_grad_(True)
        loss_ap = ap_loss(mine, targets[lo:hi], delta, pool="global")
        loss_ap.backward()
        grad_ap = mine.grad.clone()
        mine.grad = None
        loc = loc_errors[first : first + count].clone().requires_grad_(True)
        loss_cls, loss_loc = alrp_loss(mine, targets[lo:hi], loc, delta, pool="global")
        (loss_cls + loss_loc).backward()
        result = {
            "ap": loss_ap.detach(),
            "grad_ap": grad_ap,
            "cls": loss_cls.detach(),
            "loc": loss_loc.detach(),
            "grad_cls": mine.grad,
            "grad_loc": loc.grad,
        }
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# Behaviour snapshots: what a model computes on fixed inputs, independent of construction order


@torch.no_grad()
def named_init_(model: torch.nn.Module) -> torch.nn.Module:
    """Re-initialise every parameter of ``model`` from a seed derived from its name alone.

    Matrices and kernels (dim > 1) get ``U(-b, b)`` with ``b = 1 / sqrt(fan_in)``; 1-dim
    parameters keep a constant initial value (a prior bias, a norm's scale) and otherwise get
    ``U(-0.01, 0.01)``. Two builds of the same architecture whose parameter names agree then hold
    the same weights, whatever order their modules were created in. Returns ``model``.
    """
    import zlib

    for name, p in sorted(model.named_parameters()):
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        if p.dim() > 1:
            bound = 1.0 / float(p[0].numel()) ** 0.5
        elif p.numel() > 1 and bool((p == p.reshape(-1)[0]).all()):
            continue
        else:
            bound = 0.01
        p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return model


def _snapshot_instances(prefix, inst, out):
    fields = inst.get_fields()
    out[f"{prefix}/num"] = torch.tensor(len(inst))
    for key in ("pred_boxes", "proposal_boxes"):
        if key in fields:
            out[f"{prefix}/{key}"] = fields[key].tensor.detach().clone()
    for key in ("scores", "objectness_logits", "pred_classes"):
        if key in fields:
            out[f"{prefix}/{key}"] = fields[key].detach().clone()
    if "pred_masks" in fields:
        masks = fields["pred_masks"].detach().float()
        out[f"{prefix}/pred_masks_sum"] = masks.flatten(1).sum(1)


def model_snapshot(config_name: str) -> dict:
    """Losses, gradient sums and inference outputs of a tiny model on the fixed batch.

    The model of ``configs/quick_schedules/<config_name>`` with :func:`named_init_` weights takes
    one training forward + backward on :func:`batch` (with masks; RNG seeded before the forward),
    then an inference forward on the same images. Returns a flat dict name -> tensor: every loss,
    the summed gradient of each top-level child module and, per image, the detections (boxes,
    scores, classes, per-mask pixel sums).
    """
    torch.manual_seed(0)
    cfg = get_config(f"quick_schedules/{config_name}")
    model = named_init_(instantiate(cfg.model))
    model.train()
    inputs = batch(masks=True)
    out = {}
    torch.manual_seed(1)
    losses, _ = train_step(model, inputs)
    for key, value in losses.items():
        out[f"loss/{key}"] = value.detach().clone()
    for child_name, child in model.named_children():
        grads = [p.grad.double().sum() for p in child.parameters() if p.grad is not None]
        if grads:
            out[f"grad/{child_name}"] = torch.stack(grads).sum()
    model.eval()
    torch.manual_seed(2)
    with torch.no_grad():
        results = model([{k: v for k, v in d.items() if k != "instances"} for d in inputs])
    for i, result in enumerate(results):
        _snapshot_instances(f"out{i}", result["instances"], out)
    return out


def loss_snapshot() -> dict:
    """Values and input gradients of :func:`rank_sort_loss`, ``ap_loss`` and ``alrp_loss`` on
    fixed random ranking pools: few and many positives (both positive-positive passes of RS),
    continuous and tied qualities, trained-like and untrained-like logits. Returns a flat dict
    name -> tensor."""
    from ..losses import alrp_loss, ap_loss

    out = {}
    cases = [  # (name, n, num_pos, logit spread of the negatives, quality kind)
        ("small", 3000, 40, 1.0, "cont"),
        ("ties", 3000, 200, 0.3, "quant"),
        ("many", 12000, 2600, 2.0, "cont"),
    ]
    for name, n, num_pos, spread, kind in cases:
        g = torch.Generator().manual_seed(n + num_pos)
        logits = torch.randn(n, generator=g, dtype=torch.float64) * spread
        targets = torch.zeros(n, dtype=torch.float64)
        pos = torch.randperm(n, generator=g)[:num_pos]
        targets[torch.randperm(n, generator=g)[: n // 20]] = -1.0
        targets[pos] = draw_qualities(kind, num_pos, g)
        logits[pos] += 1.0
        for delta in (0.5, 0.0):
            x = logits.clone().requires_grad_(True)
            rank, sort = rank_sort_loss(x, targets, delta)
            rank.backward()
            out.update({f"rs/{name}/{delta}/rank": rank.detach(), f"rs/{name}/{delta}/sort": sort})
            out[f"rs/{name}/{delta}/grad"] = x.grad
        x = logits.clone().requires_grad_(True)
        ap = ap_loss(x, targets, 1.0)
        ap.backward()
        out.update({f"ap/{name}/loss": ap.detach(), f"ap/{name}/grad": x.grad})
        x = logits.clone().requires_grad_(True)
        loc = torch.rand(num_pos, generator=g, dtype=torch.float64).requires_grad_(True)
        cls, loc_loss = alrp_loss(x, targets, loc, 1.0)
        (cls + loc_loss).backward()
        out.update({f"alrp/{name}/cls": cls.detach(), f"alrp/{name}/loc": loc_loss.detach()})
        out.update({f"alrp/{name}/grad": x.grad, f"alrp/{name}/grad_loc": loc.grad})
    return out


# ----------------------------------------------------------------------------------------------
# train_net.py, run as a user runs it

#: The source checkout this package is imported from: ``train_net.py`` and ``configs/`` are there
#: (an installed wheel has neither).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_net_cmd(config, output_dir, *overrides, flags=()):
    """The command line of a CPU ``train_net.py`` run.

    Args:
        config: the config file, relative to :data:`REPO`.
        output_dir: ``train.output_dir``.
        overrides: more ``KEY=VALUE`` overrides, after ``train.device=cpu``.
        flags: flags (e.g. ``--resume``), before ``--config-file``.
    Returns:
        list[str]: the command, run with this Python interpreter.
    """
    return [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        *flags,
        "--config-file",
        os.path.join(REPO, config),
        f"train.output_dir={output_dir}",
        "train.device=cpu",
        *overrides,
    ]


def run_train_net(config, output_dir, *overrides, flags=(), timeout=900, check=True):
    """Run :func:`train_net_cmd` in a subprocess (in :data:`REPO`) to completion.

    Args:
        timeout: seconds before ``subprocess.TimeoutExpired``.
        check: assert that it exited with 0 (the message holds the ends of its stdout and stderr).
    Returns:
        subprocess.CompletedProcess: with text ``stdout`` and ``stderr``.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        train_net_cmd(config, output_dir, *overrides, flags=flags),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_metrics(output_dir):
    """The records of ``output_dir/metrics.json`` (Detectron2's JSONWriter: one JSON object per
    logged iteration and per evaluation), in order."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def host_reads():
    """Within the block, record each ``Tensor.tolist()`` / ``Tensor.item()`` call (the reads of
    device values that synchronise with a GPU) in the yielded list, as ``"tolist"`` / ``"item"``."""
    calls = []
    original = {name: getattr(torch.Tensor, name) for name in ("tolist", "item")}

    def counting(name):
        def read(self, *args, **kwargs):
            calls.append(name)
            return original[name](self, *args, **kwargs)

        return read

    try:
        for name in original:
            setattr(torch.Tensor, name, counting(name))
        yield calls
    finally:
        for name, method in original.items():
            setattr(torch.Tensor, name, method)


def top_level_ops(call: Callable[[], object], cuda: bool = False) -> Tuple[Counter, Optional[int]]:
    """The aten operations that ``call()`` runs at the top level (not inside another aten
    operation), counted by name with torch.profiler, and the CUDA kernels it launches.

    On a GPU each top-level operation that computes is one or a few kernel launches, and at the
    sizes of a detection loss their number, not the bytes they move, sets the time. The count is
    what a CPU run can give of the launches, not the launches themselves: views
    (``aten::slice``, ``aten::select``, ...) launch nothing but are counted, and an operation that
    launches several kernels counts once.

    Args:
        call: what to profile, e.g. one forward + backward of a loss.
        cuda: also record CUDA activity and count its kernels.
    Returns:
        ``(ops, kernels)``: a Counter of operation names, and the number of CUDA kernels (None
        unless ``cuda``).
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        call()
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()

    def is_op(event) -> bool:
        return event.name.startswith("aten::")

    ops = Counter(
        e.name
        for e in events
        if is_op(e)
        and e.device_type == torch.autograd.DeviceType.CPU
        and (e.cpu_parent is None or not is_op(e.cpu_parent))
    )
    kernels = None
    if cuda:
        kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return ops, kernels


def ranking_loss_step(loss: str, logits: torch.Tensor, targets: torch.Tensor, loc: torch.Tensor):
    """One forward + backward of a ranking loss at the papers' delta, on detached copies.

    Args:
        loss: ``"RS"`` (delta 0.5), ``"AP"`` or ``"aLRP"`` (delta 1).
        logits, targets: a ranking pool (any shape, the same for both).
        loc: (P,) localisation errors of the positives (aLRP only).
    Returns:
        the gradient w.r.t. ``logits``.
    """
    x = logits.detach().requires_grad_(True)
    if loss == "RS":
        value = rank_sort_loss(x, targets, 0.5)[0]
    elif loss == "AP":
        value = ap_loss(x, targets, 1.0)
    elif loss == "aLRP":
        value = sum(alrp_loss(x, targets, loc.detach().requires_grad_(True), 1.0))
    else:
        raise ValueError(f"loss must be RS, AP or aLRP, got {loss!r}")
    value.backward()
    return x.grad
