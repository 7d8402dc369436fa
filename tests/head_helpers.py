"""Inputs and small utilities shared by the tests of the RS heads inside tiny models
(test_rs_heads.py: two-stage; test_dense_heads.py: one-stage). tests/ is on sys.path (conftest)."""

import os

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")

# Ground truth of the three 128 x 128 images of `batch`: (boxes XYXY, class ids in 0..7).
BATCH_OBJECTS = [
    ([[10, 12, 70, 80], [60, 40, 120, 110]], [1, 3]),
    ([[30, 30, 90, 100]], [5]),
    ([[5, 5, 50, 40], [70, 70, 125, 125], [20, 80, 60, 120]], [0, 7, 2]),
]


def build_tiny(config_name, seed=0):
    """The model of ``configs/quick_schedules/<config_name>``, seeded, in training mode."""
    torch.manual_seed(seed)
    cfg = LazyConfig.load(os.path.join(CONFIGS, "quick_schedules", config_name))
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
        for m, (x1, y1, x2, y2) in zip(bits, boxes.round().long().tolist()):
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
