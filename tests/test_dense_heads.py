"""RS dense (one-stage) detectors (RS-RetinaNet, RS-ATSS, RS-PAA, RS-FCOS): losses, targets, empty
GT, inference, configs, and end-to-end training of each tiny dense model through train_net.py."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.box_regression import Box2BoxTransform, Box2BoxTransformLinear
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from rs_detectron2.losses import rank_sort_loss
from rs_detectron2.model_zoo import get_config, get_config_file
from rs_detectron2.modeling import (
    ATSSAssigner,
    FCOSAssigner,
    IoUAssigner,
    PAAAssigner,
    RSDenseDetector,
    ScaledRetinaNetHead,
)
from rs_detectron2.utils.testing import (
    assert_zero_losses_still_in_graph,
    batch,
    build_tiny,
    grad_sum,
    make_image,
    run_train_net,
    train_step,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RS_DENSE = ["rs_retinanet", "rs_atss", "rs_paa", "rs_fcos"]
DENSE_KEYS = {"loss_dense_rank", "loss_dense_sort", "loss_dense_box"}


def load(name):
    return get_config(name)


def build(name, seed=0):
    return build_tiny(f"{name}_tiny.py", seed)


def head_layers(model):
    head = model.head
    layers = {"cls_score": head.cls_score, "bbox_pred": head.bbox_pred}
    return layers


# --------------------------------------------------------------------------------------------
# Training losses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RS_DENSE)
def test_losses_keys_finite_balanced_and_gradients(name):
    model = build(name)
    losses, storage = train_step(model, batch())
    assert set(losses) == DENSE_KEYS
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    assert not losses["loss_dense_sort"].requires_grad
    assert float(losses["loss_dense_rank"]) > 0.5  # untrained: most negatives outrank positives
    ref = losses["loss_dense_rank"] + losses["loss_dense_sort"]
    torch.testing.assert_close(losses["loss_dense_box"].detach(), ref.detach())
    for key, layer in head_layers(model).items():
        assert grad_sum(layer) > 0, f"no gradient reached {key}"
    if isinstance(model.head, ScaledRetinaNetHead):
        assert model.head.scales.grad is not None and model.head.scales.grad.abs().sum() > 0
    assert storage.history("num_pos_anchors").latest() > 0


@pytest.mark.parametrize("name", RS_DENSE)
@pytest.mark.parametrize("num_empty", [1, 3])
def test_empty_ground_truth(name, num_empty):
    model = build(name)
    losses, storage = train_step(model, batch(num_empty=num_empty))
    assert set(losses) == DENSE_KEYS
    for key, value in losses.items():
        assert torch.isfinite(value), key
    if num_empty == 3:
        # no positives anywhere: zero losses that still reach the head's parameters
        assert_zero_losses_still_in_graph(losses, head_layers(model))
        assert storage.history("num_pos_anchors").latest() == 0
    else:
        assert float(losses["loss_dense_rank"]) > 0


@pytest.mark.parametrize("name", ["rs_paa", "rs_fcos"])
def test_losses_under_autocast_are_float32(name):
    """AMP: with a low-precision forward (bfloat16 CPU autocast here), the assigner and the
    losses still run in float32."""
    model = build(name)
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch())
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    sum(losses.values()).backward()
    assert grad_sum(model.head.cls_score) > 0


def test_rs_fcos_without_a_point_inside_any_box_has_zero_losses_in_the_graph():
    """Ground truth but no positive: boxes between FCOS's points (level-0 centres at 4, 12, ...;
    the level-1 point (8, 8) inside the first box reaches only 3 px, below level 1's 64)."""
    model = build("rs_fcos")
    inputs = [make_image(128, 128, [[5, 5, 11, 11], [69, 69, 75, 75]], [1, 2], seed=0)]
    losses, storage = train_step(model, inputs)
    assert set(losses) == DENSE_KEYS
    assert storage.history("num_pos_anchors").latest() == 0
    assert_zero_losses_still_in_graph(losses, head_layers(model))


def test_rs_fcos_inference_under_autocast_decodes_in_float32(monkeypatch):
    """The linear box coder decodes in its input's dtype (Box2BoxTransform casts to float32
    itself): the detector hands it float32 deltas, so bfloat16 autocast does not round the
    decoded coordinates (to 0.5-1 px at 64-256; Boxes casts only the rounded result)."""
    model = build("rs_fcos").eval()
    model.test_score_thresh = 0.0
    coder = model.box2box_transform
    decoded = []

    def spy(deltas, boxes, decode=coder.apply_deltas):
        out = decode(deltas, boxes)
        decoded.append((deltas.dtype, out.dtype))
        return out

    monkeypatch.setattr(coder, "apply_deltas", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        heads = model.head([torch.randn(1, 64, 4, 4)] * 5)
        out = model([make_image(128, 128, [], [], seed=1)])[0]["instances"]
    assert heads[1][0].dtype == torch.bfloat16  # the head's deltas are low precision
    assert len(out) > 0 and decoded
    assert set(decoded) == {(torch.float32, torch.float32)}


def test_scaled_head_multiplies_each_levels_box_output():
    torch.manual_seed(0)
    head = ScaledRetinaNetHead(
        input_shape=[ShapeSpec(channels=32)] * 2, num_classes=2, num_anchors=3, conv_dims=[32]
    )
    assert isinstance(head.bbox_subnet[1], torch.nn.GroupNorm)  # GN by default
    features = [torch.randn(1, 32, 6, 6), torch.randn(1, 32, 3, 3)]
    _, before = head(features)
    with torch.no_grad():
        head.scales[1] = 3.0
    logits, after = head(features)
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[1], 3 * before[1])
    assert logits[0].shape == (1, 6, 6, 6) and after[0].shape == (1, 12, 6, 6)


def small_detector(assigner, num_classes=3):
    """An RSDenseDetector around a dummy backbone; only losses() / label_anchors() are
    exercised."""
    from detectron2.modeling.backbone import Backbone

    class _Dummy(Backbone):
        def forward(self, x):
            return {}

        def output_shape(self):
            return {"p3": ShapeSpec(channels=4, stride=8)}

    return RSDenseDetector(
        backbone=_Dummy(),
        head=RetinaNetHead(
            input_shape=[ShapeSpec(channels=4)],
            num_classes=num_classes,
            num_anchors=1,
            conv_dims=[4],
        ),
        head_in_features=["p3"],
        anchor_generator=DefaultAnchorGenerator(sizes=[[16]], aspect_ratios=[1.0], strides=[8]),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        assigner=assigner,
        num_classes=num_classes,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )


def test_targets_one_rs_call_over_the_batch(monkeypatch):
    """Targets: a positive's GT-class entry is the IoU of its regressed box, its other classes are
    0; an ignored anchor is -1 on every class; box weights are the max-class sigmoid; one call."""
    model = small_detector(IoUAssigner())
    anchors = [
        Boxes(
            torch.tensor(
                [[0, 0, 10, 10], [0, 0, 10, 22], [50, 50, 60, 60], [0, 0, 10, 14]],
                dtype=torch.float32,
            )
        )
    ]
    gt_boxes = [
        torch.tensor([[0, 0, 10, 10]], dtype=torch.float32),
        torch.tensor([[50, 50, 60, 60]]),
    ]
    insts = []
    for b, c in zip(gt_boxes, ([2], [0])):
        inst = Instances((100, 100))
        inst.gt_boxes = Boxes(b.float())
        inst.gt_classes = torch.tensor(c)
        insts.append(inst)
    # image 0: a0 IoU 1 (pos, class 2), a1 IoU 0.4545 (ignored), a2 0 (neg), a3 0.714 (pos);
    # image 1: a2 IoU 1 (pos, class 0), the others 0 (neg)
    labels, matched = model.label_anchors(anchors, insts)
    assert labels[0].tolist() == [2, -1, 3, 2] and labels[1].tolist() == [3, 3, 0, 3]

    logits = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    deltas = torch.zeros(2, 4, 4)
    # a3 = [0, 0, 10, 14] regressed onto [0, 0, 10, 10] exactly (weights 10, 10, 5, 5): IoU 1
    deltas[0, 3, 1] = 10 * (5 - 7) / 14
    deltas[0, 3, 3] = 5 * math.log(10 / 14)
    deltas.requires_grad_(True)
    calls = []
    real = model.ranking_loss.head_losses

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(model.ranking_loss, "head_losses", spy)
    with EventStorage(0):
        losses = model.losses(anchors, [logits], labels, [deltas], matched)
    assert len(calls) == 1
    (lg, targets, giou, weights), kwargs = calls[0]
    assert kwargs["prefix"] == "loss_dense" and lg.shape == (2, 4, 3)
    expected = torch.zeros(2, 4, 3)
    expected[0, 1] = -1.0
    expected[0, 0, 2] = 1.0  # a0's box is the GT
    expected[0, 3, 2] = 1.0  # a3 regressed onto the GT
    expected[1, 2, 0] = 1.0
    torch.testing.assert_close(targets, expected, atol=1e-5, rtol=0)
    pos = [(0, 0), (0, 3), (1, 2)]
    sig = logits.detach().sigmoid()
    torch.testing.assert_close(weights, torch.stack([sig[i, a].max() for i, a in pos]))
    # every positive's regressed box is its own ground truth: GIoU loss 0 (a wrong pairing of
    # boxes and ground truth would show here)
    torch.testing.assert_close(giou, torch.zeros(3), atol=1e-5, rtol=0)
    rank, sort = rank_sort_loss(logits.detach(), expected)
    torch.testing.assert_close(losses["loss_dense_rank"].detach(), rank, atol=1e-5, rtol=0)
    torch.testing.assert_close(losses["loss_dense_sort"], sort, atol=1e-5, rtol=0)


def test_paa_receives_the_images_predictions():
    seen = []

    class Spy(PAAAssigner):
        def __call__(self, anchors, counts, inst, pred_logits=None, pred_boxes=None):
            seen.append((pred_logits, pred_boxes))
            return super().__call__(anchors, counts, inst, pred_logits, pred_boxes)

    model = build("rs_paa")
    model.assigner = Spy()
    train_step(model, batch())
    assert len(seen) == 3
    for pred_logits, pred_boxes in seen:
        assert pred_logits.shape[1] == model.num_classes and pred_boxes.shape == (
            len(pred_logits),
            4,
        )
        assert not pred_logits.requires_grad and not pred_boxes.requires_grad


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def _inference(model, score_voting=None):
    model.eval()
    model.test_score_thresh = 0.0
    if score_voting is not None:
        model.score_voting = score_voting
    captured = []
    orig = model.head.forward

    def spy(features):
        out = orig(features)
        # copies: with one anchor per location the detector's transposed logits are views of
        # these, and it takes their sigmoid in place
        captured.append([[x.clone() for x in per_level] for per_level in out])
        return out

    model.head.forward = spy
    inputs = [
        {
            "image": torch.randint(
                0, 255, (3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
            )
        }
    ]
    with torch.no_grad():
        out = model(inputs)[0]["instances"]
    del model.head.forward
    return out, captured[0]


@pytest.mark.parametrize("name", RS_DENSE)
def test_inference_scores_are_plain_sigmoids(name):
    model = build(name)
    out, (logits, _) = _inference(model, score_voting=False)
    assert 0 < len(out) <= model.max_detections_per_image
    probs = torch.cat([x.flatten() for x in logits]).sigmoid()
    for s in out.scores[:20]:
        assert torch.isclose(probs, s, atol=1e-6, rtol=0).any()


def test_paa_score_voting_moves_boxes_not_scores():
    model = build("rs_paa")
    assert model.score_voting
    with torch.no_grad():  # make neighbouring boxes disagree so that voting has an effect
        model.head.bbox_pred.weight.normal_(std=0.5)
    plain, _ = _inference(model, score_voting=False)
    voted, _ = _inference(model, score_voting=True)
    torch.testing.assert_close(plain.scores, voted.scores)
    assert torch.equal(plain.pred_classes, voted.pred_classes)
    assert not torch.allclose(plain.pred_boxes.tensor, voted.pred_boxes.tensor)
    # each voted box stays close to its original (a weighted mean of overlapping boxes)
    assert (pairwise_iou(plain.pred_boxes, voted.pred_boxes).diagonal() > 0.5).all()


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_dense_configs_follow_the_paper(size):
    def cfg(name):
        if size == "tiny":
            return load(f"quick_schedules/{name}_tiny.py")
        return load(f"COCO-Detection/{name}_R_50_FPN_1x.py")

    for name in ["rs_retinanet", "rs_atss", "rs_paa", "retinanet"]:  # RS-FCOS: below
        c = cfg(name)
        m = c.model
        assert c.dataloader.train.mapper.use_instance_mask is False
        if size == "tiny":  # keep the top 20 whatever their score, as the tiny R-CNNs
            assert m.test_score_thresh == 0.0 and m.max_detections_per_image == 20
            assert m.num_classes == m.head.num_classes == 8
        if name == "retinanet":
            assert m._target_.__name__ == "RetinaNet"
            assert tuple(m.box2box_transform.weights) == (1, 1, 1, 1)
            assert c.optimizer.lr == pytest.approx(0.01 if size == "full" else 0.005)
            continue
        assert m._target_ is RSDenseDetector and m.ranking_loss.delta == 0.5
        assert tuple(m.box2box_transform.weights) == (10, 10, 5, 5)
        assert m.test_topk_candidates == 1000
        if size == "full":
            assert c.optimizer.lr == pytest.approx(0.008)
            assert m.test_score_thresh == 0.05 and m.max_detections_per_image == 100
            assert c.dataloader.train.total_batch_size == 16
        if name == "rs_retinanet":
            assert m.assigner._target_ is IoUAssigner
            assert list(m.assigner.thresholds) == [0.4, 0.5]
            assert m.test_nms_thresh == 0.5 and m.head.num_anchors == 9
            assert m.backbone.top_block.get("in_feature", "res5") == "res5"
            continue
        assert m.assigner._target_ is (ATSSAssigner if name == "rs_atss" else PAAAssigner)
        assert m.assigner.topk == 9
        assert m.test_nms_thresh == 0.6
        assert m.get("score_voting", False) == (name == "rs_paa")
        assert m.head._target_ is ScaledRetinaNetHead and m.head.norm == "GN"
        assert m.head.num_anchors == 3 and m.head.prior_prob == 0.01
        assert len(m.head.conv_dims) == (4 if size == "full" else 2)
        assert m.backbone.top_block.in_feature == "p5"
        gen = m.anchor_generator
        assert list(gen.aspect_ratios) == [1.0] and list(gen.strides) == [8, 16, 32, 64, 128]
        for sizes, stride in zip(gen.sizes, gen.strides):
            expected = [stride * 4 * 2 ** (k / 3) for k in range(3)]  # octave base 4, 3 scales
            assert list(sizes) == pytest.approx(expected)
        if name == "rs_paa":
            assert m.assigner.iou_threshold == 0.1 and m.score_voting_sigma == 0.025


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_fcos_configs_are_the_designed_models(size):
    """RS-FCOS: RSDenseDetector on FCOS's points, assigner and box coder, the authors' GN head
    without centerness; the stock FCOS is Detectron2's; the ATSS-style variant changes only the
    assigner and the anchor sizes."""

    def cfg(name):
        if size == "tiny":
            return load(f"quick_schedules/{name}_tiny.py")
        return load(f"COCO-Detection/{name}_R_50_FPN_1x.py")

    rs, stock = cfg("rs_fcos"), cfg("fcos")
    m = rs.model
    assert m._target_ is RSDenseDetector and m.ranking_loss.delta == 0.5
    assert m.box2box_transform._target_ is Box2BoxTransformLinear
    assert m.box2box_transform.normalize_by_size is True
    gen = m.anchor_generator
    strides = [8, 16, 32, 64, 128]
    assert list(gen.strides) == strides and [list(x) for x in gen.sizes] == [[s] for s in strides]
    assert list(gen.aspect_ratios) == [1.0] and gen.offset == 0.5  # Detectron2 FCOS's points
    assert m.assigner._target_ is FCOSAssigner
    assert m.assigner.center_sampling_radius == 1.5 and list(m.assigner.size_range) == [4, 8]
    assert m.ignore_padding_anchors is False  # FCOS labels every point
    assert m.head._target_ is ScaledRetinaNetHead and m.head.norm == "GN"
    assert m.head.num_anchors == 1 and m.head.prior_prob == 0.01
    assert m.head.tower_conv_bias is False
    assert len(m.head.conv_dims) == (4 if size == "full" else 2)
    assert m.candidate_selection == "anchor" and m.clip_boxes_before_nms is True
    assert m.test_nms_thresh == 0.6 and m.test_topk_candidates == 1000
    # Detectron2 FCOS's backbone: P6 from P5, P7 from ReLU(P6)
    assert m.backbone.top_block._target_ is LastLevelP6P7
    assert m.backbone.top_block.in_feature == "p5"
    assert OmegaConf.to_container(m.backbone) == OmegaConf.to_container(stock.model.backbone)
    assert stock.model._target_.__name__ == "FCOS"
    assert stock.model.head._target_.__name__ == "FCOSHead"
    for c in (rs, stock):
        assert c.dataloader.train.mapper.use_instance_mask is False
    model = instantiate(m)
    assert not hasattr(model.head, "ctrness")  # no centerness: RS's IoU targets replace it
    towers = [*model.head.cls_subnet, *model.head.bbox_subnet]
    assert all(layer.bias is None for layer in towers if isinstance(layer, torch.nn.Conv2d))
    if size == "tiny":  # the tiny pair: the shared tiny optimiser, the dense-RS LR for RS
        assert m.test_score_thresh == 0.0 and m.max_detections_per_image == 20
        assert m.num_classes == m.head.num_classes == stock.model.num_classes == 8
        assert rs.optimizer.lr == pytest.approx(0.008) and stock.optimizer.lr == 0.005
        assert rs.train.clip_gradients.max_norm is None
        return
    assert m.test_score_thresh == 0.05 and m.max_detections_per_image == 100
    # the authors' recipe: LR 0.01, biases at 2 x LR without decay, clipping at 35, a constant
    # 1/3 warmup over 500 iterations; same data and 1x as the stock FCOS
    assert rs.optimizer.lr == stock.optimizer.lr == 0.01
    assert rs.optimizer.params.bias_lr_factor == 2.0
    assert rs.optimizer.params.weight_decay_bias == 0.0
    assert rs.optimizer.params.weight_decay_norm is None  # GN decays, as mmdetection
    assert rs.train.clip_gradients.max_norm == 35.0
    assert stock.train.clip_gradients.max_norm is None
    assert stock.optimizer.params.weight_decay_norm == 0.0
    assert "bias_lr_factor" not in stock.optimizer.params
    warmup = rs.lr_multiplier
    assert warmup.warmup_method == "constant" and warmup.warmup_factor == pytest.approx(1 / 3)
    assert warmup.warmup_length * rs.train.max_iter == pytest.approx(500)
    assert rs.train.max_iter == stock.train.max_iter == 87950
    assert list(warmup.scheduler.milestones) == list(stock.lr_multiplier.scheduler.milestones)
    assert rs.dataloader.train.total_batch_size == stock.dataloader.train.total_batch_size == 16
    # the bias LR follows an override of the LR
    overridden = LazyConfig.apply_overrides(cfg("rs_fcos"), ["optimizer.lr=0.02"])
    overridden.optimizer.params.model = torch.nn.Conv2d(1, 1, 1)
    groups = instantiate(overridden.optimizer).param_groups
    assert sorted((g["lr"], g["weight_decay"]) for g in groups) == [(0.02, 1e-4), (0.04, 0.0)]
    # the ATSS-style variant: only the assigner and the anchor sizes (8 x stride) differ
    atss = load("COCO-Detection/rs_fcos_atss_R_50_FPN_1x.py")
    assert atss.model.assigner._target_ is ATSSAssigner and atss.model.assigner.topk == 9
    assert [list(x) for x in atss.model.anchor_generator.sizes] == [[8 * s] for s in strides]
    mine, theirs = OmegaConf.to_container(atss), OmegaConf.to_container(rs)
    for c in (mine, theirs):
        del c["model"]["assigner"], c["model"]["anchor_generator"]["sizes"]
    assert mine == theirs


# --------------------------------------------------------------------------------------------
# End to end: a few training iterations of each tiny model through train_net.py
# --------------------------------------------------------------------------------------------

# Iterations per model (log every 5): RS with RetinaNet's head (no normalisation, weights of std
# 0.01) barely moves for its first ~20 iterations (RS is invariant to the shared prior bias, so
# only the tiny tower weights can start it); the GN heads and focal loss move from the start.
E2E_ITERS = {"rs_retinanet": 60, "rs_atss": 40, "rs_paa": 40, "retinanet": 40}
E2E_LOG_PERIOD = 5


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("name", sorted(E2E_ITERS))
def test_train_net_end_to_end(name, tmp_path):
    """Train the tiny model for a few iterations on the shapes dataset and evaluate it: the logged
    losses are finite and go down (mean of the first two logs vs the last two), and COCO
    evaluation reports a bbox AP."""
    iters = E2E_ITERS[name]
    out = tmp_path / name
    cmd = [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        "--config-file",
        get_config_file(f"quick_schedules/{name}_tiny.py"),
        f"train.max_iter={iters}",
        f"train.eval_period={iters}",
        f"train.log_period={E2E_LOG_PERIOD}",
        f"train.output_dir={out}",
        "train.checkpointer.period=1000000",
        "train.device=cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_metrics(out / "metrics.json")
    train_rows = [r for r in rows if "total_loss" in r]
    assert len(train_rows) == iters // E2E_LOG_PERIOD
    loss_keys = [k for k in train_rows[0] if k.startswith("loss_")]
    expected_keys = DENSE_KEYS if name.startswith("rs_") else {"loss_cls", "loss_box_reg"}
    assert set(loss_keys) == expected_keys
    for row in train_rows:
        for k in loss_keys + ["total_loss"]:
            assert math.isfinite(row[k]), (k, row)
    total = [r["total_loss"] for r in train_rows]
    first, last = sum(total[:2]) / 2, sum(total[-2:]) / 2
    assert last < 0.95 * first, total
    ap = [r["bbox/AP"] for r in rows if "bbox/AP" in r]
    assert len(ap) == 1 and math.isfinite(ap[0]) and ap[0] >= 0, rows[-1]
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "name, loss_keys",
    [
        ("rs_fcos", DENSE_KEYS),
        ("fcos", {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}),
    ],
)
def test_fcos_pair_trains_and_evaluates_through_train_net(name, loss_keys, tmp_path):
    """The tiny FCOS pair through train_net.py: 3 iterations with finite losses, then a COCO
    evaluation (a short run: the losses falling is shown by benchmarks/compare_losses.py)."""
    iters = 3
    out = tmp_path / name
    run_train_net(
        f"configs/quick_schedules/{name}_tiny.py",
        out,
        f"train.max_iter={iters}",
        f"train.eval_period={iters}",
        "train.log_period=1",
        "train.checkpointer.period=1000000",
        "train.seed=0",
        timeout=600,
    )
    rows = read_metrics(out / "metrics.json")
    train_rows = [r for r in rows if "total_loss" in r]
    assert len(train_rows) == iters
    for row in train_rows:
        assert {k for k in row if k.startswith("loss_")} == loss_keys
        assert all(math.isfinite(row[k]) for k in loss_keys | {"total_loss"}), row
    ap = [r["bbox/AP"] for r in rows if "bbox/AP" in r]
    assert len(ap) == 1 and math.isfinite(ap[0]) and ap[0] >= 0, rows[-1]
