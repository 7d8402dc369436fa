"""YOLACT and RS-YOLACT: mask assembly and cropping, Fast NMS, the FPN sizes, losses on edge cases,
inference output, the configs (recipes and class counts) and short train_net.py runs."""

import math
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances, pairwise_iou

from rs_detectron2.losses import RankingLoss, RankSortLoss
from rs_detectron2.modeling import IoUAssigner
from rs_detectron2.modeling.yolact import (
    RSYOLACT,
    YOLACT,
    assemble_masks,
    crop_masks,
    fast_nms,
    gt_masks_at,
    pyramid_strides,
    yolact_postprocess,
)
from rs_detectron2.utils.testing import (
    assert_zero_losses_still_in_graph,
    build_tiny,
    grad_sum,
    make_image,
    train_step,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_CONFIGS = [
    "COCO-InstanceSegmentation/rs_yolact_R_50_550_55e.py",
    "COCO-InstanceSegmentation/yolact_R_50_550_55e.py",
]
TINY_CONFIGS = ["quick_schedules/rs_yolact_tiny.py", "quick_schedules/yolact_tiny.py"]
RS_KEYS = {"loss_dense_rank", "loss_dense_sort", "loss_dense_box", "loss_dense_mask"}
STOCK_KEYS = {"loss_cls", "loss_box_reg", "loss_mask", "loss_sem_seg"}
SIZE = 160  # the tiny configs' input side

# Ground truth of three SIZE x SIZE images: (boxes XYXY, class ids in 0..7).
OBJECTS = [
    ([[10, 12, 70, 80], [60, 40, 150, 110]], [1, 3]),
    ([[30, 30, 90, 100]], [5]),
    ([[5, 5, 50, 40], [70, 70, 155, 155], [20, 80, 60, 120]], [0, 7, 2]),
]


def load(name):
    return LazyConfig.load(os.path.join(REPO, "configs", name))


def yolact_batch(num_empty=0):
    inputs = []
    for i, (boxes, classes) in enumerate(OBJECTS):
        if i < num_empty:
            boxes, classes = [], []
        inputs.append(make_image(SIZE, SIZE, boxes, classes, seed=i, masks=True))
    return inputs


def build(name, seed=0):
    return build_tiny(f"{name}_tiny.py", seed)


def head_layers(model):
    head = model.head
    layers = {"cls_score": head.cls_score, "bbox_pred": head.bbox_pred}
    layers.update(coeff_pred=head.coeff_pred, protonet=model.protonet)
    return layers


# --------------------------------------------------------------------------------------------
# Mask assembly and cropping
# --------------------------------------------------------------------------------------------


def test_assemble_masks_is_sigmoid_of_prototypes_times_coefficients():
    protos = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 3.0], [1.0, 0.0]]])  # (2, 2, 2)
    coeffs = torch.tensor([[1.0, 0.0], [0.5, -1.0], [0.0, 0.0]])
    masks = assemble_masks(protos, coeffs)
    assert masks.shape == (3, 2, 2)
    expected = torch.stack(
        [
            torch.tensor([[1.0, 0.0], [0.0, 2.0]]),
            torch.tensor([[0.5, -3.0], [-1.0, 1.0]]),
            torch.zeros(2, 2),
        ]
    ).sigmoid()
    torch.testing.assert_close(masks, expected)


def test_crop_keeps_whole_pixels_of_the_box_widened_by_the_padding():
    masks = torch.ones(1, 10, 10)
    # x 3..5, y 3..6 on the 10 x 10 map; padding 1: columns 2..5, rows 2..6 (end exclusive)
    cropped = crop_masks(masks, torch.tensor([[0.3, 0.3, 0.5, 0.6]]), padding=1)
    expected = torch.zeros(10, 10)
    expected[2:7, 2:6] = 1
    torch.testing.assert_close(cropped[0], expected)
    # without padding: exactly columns 3, 4 and rows 3, 4, 5
    cropped = crop_masks(masks, torch.tensor([[0.3, 0.3, 0.5, 0.6]]), padding=0)
    assert cropped[0].nonzero().unique(dim=0).tolist() == [
        [r, c] for r in range(3, 6) for c in range(3, 5)
    ]


def test_crop_clamps_to_the_map_and_orders_the_corners():
    masks = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6) + 1
    boxes = torch.tensor([[-0.5, -0.2, 0.2, 0.3], [1.2, 1.0, 0.5, 0.5]])  # 2nd: corners swapped
    cropped = crop_masks(masks, boxes, padding=1)
    keep0 = torch.zeros(4, 6, dtype=torch.bool)
    keep0[0:3, 0:3] = True  # x: [-3 - 1, 1.2 + 1] -> [0, 2.2); y: [0, 2.2)
    keep1 = torch.zeros(4, 6, dtype=torch.bool)
    keep1[1:4, 2:6] = True  # x: [3 - 1, 7.2 + 1] -> [2, 6); y: [2 - 1, 4 + 1] -> [1, 4)
    torch.testing.assert_close(cropped[0], masks[0] * keep0)
    torch.testing.assert_close(cropped[1], masks[1] * keep1)


def test_crop_passes_gradients_inside_the_box_only():
    masks = torch.rand(1, 8, 8, requires_grad=True)
    crop_masks(masks, torch.tensor([[0.25, 0.25, 0.5, 0.5]]), padding=0).sum().backward()
    expected = torch.zeros(8, 8)
    expected[2:4, 2:4] = 1
    torch.testing.assert_close(masks.grad[0], expected)


def test_gt_masks_are_resized_bilinearly_and_binarised():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 2:3, 2:3] = True  # one pixel: averaged below 0.5 at half resolution
    small = gt_masks_at(masks, (4, 4))
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    torch.testing.assert_close(small[0], expected)
    assert small[1].sum() == 0
    assert gt_masks_at(masks[:0], (4, 4)).shape == (0, 4, 4)


# --------------------------------------------------------------------------------------------
# Fast NMS
# --------------------------------------------------------------------------------------------


def fast_nms_loop(boxes, scores, score_thresh, iou_thresh, top_k, max_num):
    """Plain reference: per class, box j is dropped if any higher-scored box i among the class's
    top_k (suppressed or not) has IoU(i, j) > iou_thresh; then the score threshold; then the
    max_num best over all classes."""
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes))
    found = []
    for c in range(scores.shape[1]):
        order = scores[:, c].argsort(descending=True)[:top_k].tolist()
        for j_pos, j in enumerate(order):
            if any(iou[i, j] > iou_thresh for i in order[:j_pos]):
                continue
            if scores[j, c] > score_thresh:
                found.append((float(scores[j, c]), j, c))
    found.sort(reverse=True)
    return found[:max_num]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("top_k, max_num", [(200, 100), (7, 12)])
def test_fast_nms_matches_a_plain_loop(seed, top_k, max_num):
    g = torch.Generator().manual_seed(seed)
    num, num_classes = 40, 3
    xy = torch.rand(num, 2, generator=g) * 60
    wh = torch.rand(num, 2, generator=g) * 40 + 5
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(num, num_classes, generator=g)
    keep, kept_scores, classes = fast_nms(
        boxes, scores, score_thresh=0.2, iou_thresh=0.5, top_k=top_k, max_num=max_num
    )
    ref = fast_nms_loop(boxes, scores, 0.2, 0.5, top_k, max_num)
    assert len(ref) > 0
    assert [(j, c) for _, j, c in ref] == list(zip(keep.tolist(), classes.tolist()))
    torch.testing.assert_close(kept_scores, torch.tensor([s for s, _, _ in ref]))
    assert torch.all(kept_scores[:-1] >= kept_scores[1:])


def test_fast_nms_suppressed_boxes_still_suppress_and_threshold_comes_after():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [40, 40, 50, 50], [41, 40, 51, 50]],
        dtype=torch.float32,
    )
    # box 2 overlaps only box 1 (IoU 0.54), which box 0 suppresses; classic NMS would keep box 2.
    # Box 3 is below the score threshold yet still suppresses box 4.
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.04], [0.03]])
    keep, kept_scores, classes = fast_nms(boxes, scores, score_thresh=0.01, iou_thresh=0.5)
    assert keep.tolist() == [0, 3]
    keep, _, _ = fast_nms(boxes, scores, score_thresh=0.05, iou_thresh=0.5)
    assert keep.tolist() == [0]


def test_fast_nms_per_class_and_empty_input():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    keep, kept_scores, classes = fast_nms(boxes, scores, score_thresh=0.05, iou_thresh=0.5)
    # the same two boxes, each class keeps its own best one
    assert list(zip(keep.tolist(), classes.tolist())) == [(0, 0), (1, 1)]
    keep, kept_scores, classes = fast_nms(boxes[:0], scores[:0])
    assert keep.numel() == kept_scores.numel() == classes.numel() == 0


# --------------------------------------------------------------------------------------------
# Network shapes
# --------------------------------------------------------------------------------------------


def test_pyramid_strides_are_the_authors():
    assert pyramid_strides(550) == pytest.approx([550 / s for s in (69, 35, 18, 9, 5)])


def test_fpn_levels_and_anchors_at_550():
    """A 550 input gives P3-P7 of 69, 35, 18, 9, 5 (bilinear top-down, no padding), protos of
    138 and 6,416 locations x 3 anchors with centres at (k + 0.5) x stride."""
    model = build("rs_yolact").eval()
    full = load("COCO-InstanceSegmentation/rs_yolact_R_50_550_55e.py")
    model.anchor_generator = instantiate(full.model.anchor_generator)
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 550, 550))
        feats = [feats[f] for f in model.head_in_features]
        assert [f.shape[-1] for f in feats] == [69, 35, 18, 9, 5]
        assert model.protonet(feats[0]).shape[-2:] == (138, 138)
        anchors = model.anchor_generator(feats)
    assert sum(len(a) for a in anchors) == 19248
    p7 = anchors[-1].get_centers()
    assert p7[:, 0].unique().tolist() == pytest.approx([55.0, 165.0, 275.0, 385.0, 495.0])
    assert anchors[0].area()[:3].tolist() == pytest.approx([24.0**2] * 3, rel=1e-3)


# --------------------------------------------------------------------------------------------
# Training losses
# --------------------------------------------------------------------------------------------


def test_rs_losses_finite_balanced_and_reach_every_branch():
    model = build("rs_yolact")
    losses, storage = train_step(model, yolact_batch())
    assert set(losses) == RS_KEYS
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    ref = (losses["loss_dense_rank"] + losses["loss_dense_sort"]).detach()
    torch.testing.assert_close(losses["loss_dense_box"].detach(), ref)
    torch.testing.assert_close(losses["loss_dense_mask"].detach(), ref)
    for key, layer in head_layers(model).items():
        assert grad_sum(layer) > 0, f"no gradient reached {key}"
    assert storage.history("num_pos_anchors").latest() > 0
    assert not any(n.startswith("semantic") for n, _ in model.named_parameters())


def test_stock_losses_finite_and_reach_every_branch():
    model = build("yolact")
    losses, _ = train_step(model, yolact_batch())
    assert set(losses) == STOCK_KEYS
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value) and float(value) > 0, key
    for key, layer in {**head_layers(model), "semantic": model.semantic_head}.items():
        assert grad_sum(layer) > 0, f"no gradient reached {key}"


def test_ohem_keeps_three_negatives_per_positive():
    """loss_cls = (CE of the positives + CE of the 3 x #pos hardest negatives, per image) / #pos,
    recomputed here from the logits the head produced."""
    model = build("yolact")
    captured = {}
    original = YOLACT.losses

    def spy(self, batch):
        captured.update(batch._asdict())
        return original(self, batch)

    model.losses = spy.__get__(model)
    losses, _ = train_step(model, yolact_batch())
    logits, labels, pos = captured["logits"], captured["labels"], captured["pos"]
    total = 0.0
    for i in range(labels.shape[0]):
        targets = torch.full((labels.shape[1],), model.num_classes)
        sel = pos.image == i
        targets[pos.anchor[sel]] = pos.classes[sel]
        ce = torch.nn.functional.cross_entropy(logits[i].detach(), targets, reduction="none")
        n_pos = int((labels[i] == 1).sum())
        negs = ce[labels[i] == 0].sort(descending=True).values[: 3 * n_pos]
        total += float(ce[labels[i] == 1].sum() + negs.sum())
    assert float(losses["loss_cls"]) == pytest.approx(total / len(pos.image), rel=1e-5)


@pytest.mark.parametrize("name", ["rs_yolact", "yolact"])
@pytest.mark.parametrize("num_empty", [1, 3])
def test_empty_ground_truth(name, num_empty):
    model = build(name)
    losses, storage = train_step(model, yolact_batch(num_empty=num_empty))
    for key, value in losses.items():
        assert torch.isfinite(value), key
    if num_empty == 3:
        # no positives anywhere: zero losses that still reach every branch's parameters
        assert_zero_losses_still_in_graph(losses, head_layers(model))
        assert storage.history("num_pos_anchors").latest() == 0
    else:
        assert all(float(v) > 0 for v in losses.values()), losses


@pytest.mark.parametrize("name", ["rs_yolact", "yolact"])
def test_no_positives_despite_ground_truth(name):
    """GT too small for any anchor and no low-quality matches: no positive (the authors' code
    crashes here); the losses are finite and attached."""
    model = build(name)
    model.assigner = IoUAssigner(allow_low_quality_matches=False)
    inputs = [make_image(SIZE, SIZE, [[20, 20, 22, 23]], [4], seed=0, masks=True)] * 2
    losses, storage = train_step(model, inputs)
    assert storage.history("num_pos_anchors").latest() == 0
    for key, value in losses.items():
        assert torch.isfinite(value), key
    if name == "rs_yolact":
        assert_zero_losses_still_in_graph(losses, head_layers(model))
    else:
        # OHEM keeps 3 x 0 negatives and no positive: no classification, box or mask term
        for key in ("loss_cls", "loss_box_reg", "loss_mask"):
            assert float(losses[key]) == 0.0, key


@pytest.mark.parametrize("name", ["rs_yolact", "yolact"])
@pytest.mark.parametrize("num_classes", [1, 91])
def test_any_number_of_classes(name, num_classes):
    cfg = load(f"quick_schedules/{name}_tiny.py")
    cfg.model.num_classes = num_classes
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    inputs = yolact_batch()
    for x in inputs:
        x["instances"].gt_classes = x["instances"].gt_classes % num_classes
    losses, _ = train_step(model, inputs)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        result = model(inputs[:1])[0]["instances"]
    assert len(result) > 0 and int(result.pred_classes.max()) < num_classes

    # Classifiers zeroed (every logit 0): the class losses are known by hand for this class count.
    with torch.no_grad():
        for layer in (model.head.cls_score, getattr(model, "semantic_head", None)):
            if layer is not None:
                layer.weight.zero_()
                layer.bias.zero_()
    calls = []
    if name == "rs_yolact":
        model.ranking_loss.register_forward_hook(lambda m, args, out: calls.append((*args, out)))
    losses, _ = train_step(model.train(), inputs)
    if name == "rs_yolact":
        # RS over tied logits: H(0) is the same for every pair, so each positive's ranking error
        # is NFP / (R + NFP) = N / (P + N), with N counting the K - 1 other classes of a positive
        ((logits, targets, (rank, _)),) = calls
        assert logits.shape[-1] == num_classes
        num_pos, num_neg = int((targets > 0).sum()), int((targets == 0).sum())
        assert num_pos > 0
        assert float(rank.detach()) == pytest.approx(num_neg / (num_pos + num_neg), rel=1e-5)
    else:
        # softmax over K + 1 equal logits: cross-entropy log(K + 1) at every anchor; OHEM keeps
        # 3 negatives per positive (each image has far more), normalised by the positives
        assert float(losses["loss_cls"]) == pytest.approx(4 * math.log(num_classes + 1), rel=1e-5)
        # sigmoid BCE of a 0 logit is log 2 per class and P3 pixel, over N x H x W (every image
        # has ground truth)
        assert float(losses["loss_sem_seg"]) == pytest.approx(num_classes * math.log(2), rel=1e-5)


def test_positives_align_boxes_classes_and_mask_targets():
    """One index per positive: its image, anchor, GT class, GT box and the row of its GT among
    the batch's concatenated GTs (the mask target) must all belong to the same object."""
    gts = []
    for boxes, classes in OBJECTS:
        inst = Instances((SIZE, SIZE))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        gts.append(inst)
    labels = torch.zeros(3, 5, dtype=torch.int8)
    matched = torch.zeros(3, 5, dtype=torch.int64)
    labels[0, 4], matched[0, 4] = 1, 1
    labels[2, 1], matched[2, 1] = 1, 2
    labels[2, 3], matched[2, 3] = 1, 0
    labels[1, 2] = -1
    pos = YOLACT.positives(labels, matched, gts)
    assert pos.image.tolist() == [0, 2, 2] and pos.anchor.tolist() == [4, 1, 3]
    assert pos.gt_index.tolist() == [1, 5, 3]  # image 2's GTs start at row 3
    assert pos.classes.tolist() == [3, 2, 0]
    all_boxes = torch.cat([g.gt_boxes.tensor for g in gts])
    torch.testing.assert_close(pos.gt_boxes, all_boxes[pos.gt_index])


def test_rs_mask_loss_is_the_score_weighted_dice_of_the_positives():
    """The mask loss before balancing: sum_i w_i (1 - dice_i) / sum_i w_i, each positive's mask
    cropped by its own GT box against its own GT mask; shuffling the targets changes it."""
    from rs_detectron2.losses import dice_loss

    model = build("rs_yolact")
    seen = {}
    original = RankSortLoss.balance_auxiliary

    def spy(self, loss, head_losses):
        seen["mask"] = loss.detach()
        return original(self, loss, head_losses)

    model.ranking_loss.balance_auxiliary = spy.__get__(model.ranking_loss)
    captured = {}
    original_losses = RSYOLACT.losses

    def capture(self, batch):
        captured.update(batch._asdict())
        return original_losses(self, batch)

    model.losses = capture.__get__(model)
    train_step(model, yolact_batch())
    kw = captured
    pos = kw["pos"]
    with torch.no_grad():
        weights = kw["logits"][pos.image, pos.anchor].sigmoid().amax(dim=1)
        masks = []
        for k in range(len(pos.image)):
            i, a = int(pos.image[k]), int(pos.anchor[k])
            mask = assemble_masks(kw["protos"][i], kw["coeffs"][i, a][None])
            masks.append(crop_masks(mask, pos.gt_boxes[k][None] / SIZE, padding=1)[0])
        masks = torch.stack(masks)
        targets = kw["mask_targets"][pos.gt_index]
    expected = (weights * dice_loss(masks, targets)).sum() / weights.sum()
    torch.testing.assert_close(seen["mask"], expected, rtol=1e-5, atol=1e-6)
    shuffled = (weights * dice_loss(masks, targets.flip(0))).sum() / weights.sum()
    assert not torch.allclose(shuffled, expected)


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def test_postprocess_resizes_full_image_masks_and_boxes():
    masks = torch.zeros(1, 4, 4)
    masks[0, :2, :2] = 0.9
    result = Instances(
        (40, 40),
        pred_boxes=Boxes(torch.tensor([[0.0, 0.0, 20.0, 20.0]])),
        scores=torch.tensor([0.7]),
        pred_classes=torch.tensor([2]),
        pred_masks=masks,
    )
    out = yolact_postprocess(result, 80, 60)
    assert out.image_size == (80, 60)
    torch.testing.assert_close(out.pred_boxes.tensor, torch.tensor([[0.0, 0.0, 30.0, 40.0]]))
    assert out.pred_masks.shape == (1, 80, 60) and out.pred_masks.dtype == torch.bool
    assert out.pred_masks[0, :35, :25].all() and not out.pred_masks[0, 45:, :].any()
    empty = yolact_postprocess(result[:0], 80, 60)
    assert empty.pred_masks.shape == (0, 80, 60)


@pytest.mark.parametrize("name", ["rs_yolact", "yolact"])
def test_inference_returns_instances_at_the_original_size(name):
    model = build(name).eval()
    inputs = yolact_batch()[:2]
    inputs[0].update(height=300, width=200)
    with torch.no_grad():
        outputs = model(inputs)
    for out, x in zip(outputs, inputs):
        r = out["instances"]
        assert r.image_size == (x["height"], x["width"])
        assert 0 < len(r) <= model.max_detections_per_image
        assert r.pred_masks.shape == (len(r), x["height"], x["width"])
        assert r.pred_masks.dtype == torch.bool
        boxes = r.pred_boxes.tensor
        assert (boxes[:, 2] <= x["width"]).all() and (boxes[:, 3] <= x["height"]).all()
        assert torch.all(r.scores[:-1] >= r.scores[1:])
        # masks are cropped by their box (plus a prototype pixel, i.e. 4 input pixels here)
        pad = 2 * 4 * max(x["height"], x["width"]) / SIZE
        for mask, box in zip(r.pred_masks, boxes):
            ys, xs = mask.nonzero(as_tuple=True)
            if len(xs):
                assert xs.min() >= box[0] - pad and xs.max() <= box[2] + pad
                assert ys.min() >= box[1] - pad and ys.max() <= box[3] + pad


def test_padded_batch_masks_cover_each_image():
    """Images of different sizes in one batch: each image's masks come from its part of the
    padded prototype map."""
    model = build("rs_yolact").eval()
    inputs = [make_image(SIZE, SIZE, [], [], seed=0), make_image(96, 128, [], [], seed=1)]
    with torch.no_grad():
        outputs = model(inputs)
    assert outputs[1]["instances"].pred_masks.shape[1:] == (96, 128)


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FULL_CONFIGS + TINY_CONFIGS)
def test_config_loads_instantiates_and_sets_every_class_layer(name):
    cfg = load(name)
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    rs = os.path.basename(name).startswith("rs_")
    cfg.model.num_classes = 3
    model = instantiate(cfg.model)
    assert isinstance(model, RSYOLACT if rs else YOLACT)
    assert model.num_classes == model.head.num_classes == 3
    num_logits = 3 if rs else 4  # the stock softmax has a background logit
    assert model.head.cls_score.out_channels == model.head.num_anchors * num_logits
    if rs:
        assert model.semantic_head is None
    else:
        assert model.semantic_head.out_channels == 3
    names = {type(m).__name__ for m in model.modules()}
    losses = {type(m).__name__ for m in model.modules() if isinstance(m, RankingLoss)}
    assert any(n.startswith("RS") for n in names) == rs
    assert losses == ({"RankSortLoss"} if rs else set())


@pytest.mark.parametrize("name", FULL_CONFIGS)
def test_full_configs_follow_the_authors_recipe(name):
    cfg = load(name)
    rs = os.path.basename(name).startswith("rs_")
    train = cfg.dataloader.train
    batch = 32 if rs else 8
    assert train.total_batch_size == batch
    iters_per_epoch = math.ceil(117266 / batch)
    assert cfg.train.max_iter == 55 * iters_per_epoch
    assert cfg.optimizer.lr == pytest.approx(0.006 if rs else 0.001)
    assert cfg.optimizer.momentum == pytest.approx(0.9)
    assert cfg.optimizer.weight_decay == pytest.approx(5e-4)
    sched = cfg.lr_multiplier
    assert sched.warmup_length * cfg.train.max_iter == pytest.approx(500)
    assert sched.warmup_factor == pytest.approx(0.1) and sched.warmup_method == "linear"
    if rs:
        assert sched.scheduler.start_value == 1.0 and sched.scheduler.end_value == 0.0
        assert cfg.train.clip_gradients.max_norm is None
    else:
        steps = [e * iters_per_epoch for e in (20, 42, 49, 52, 55)]
        assert list(sched.scheduler.milestones) == steps
    # 550 x 550 without keeping the aspect ratio, SSD-style augmentation, RGB
    aug = train.mapper.augmentations
    assert tuple(aug.image_size) == (550, 550) and aug.image_format == "RGB"
    assert train.mapper.min_box_size == 4 and train.mapper.image_format == "RGB"
    assert tuple(cfg.dataloader.test.mapper.augmentations[0].shape) == (550, 550)
    model = cfg.model
    assert model.backbone.bottom_up.stages.stride_in_1x1 is False
    assert model.backbone.bottom_up.freeze_at == 0
    assert model.backbone.bottom_up.stages.norm == "BN"
    assert list(model.pixel_mean) == [123.68, 116.78, 103.94]
    assert [s[0] for s in model.anchor_generator.sizes] == [24, 48, 96, 192, 384]
    assert model.head.num_protos == 32 and model.head.num_anchors == 3
    assert tuple(model.box2box_transform.weights) == (10, 10, 5, 5)
    assert model.test_score_thresh == pytest.approx(0.05)
    assert model.test_nms_thresh == pytest.approx(0.5)
    assert model.test_topk_per_class == 200 and model.test_topk_candidates == 1000
    assert model.max_detections_per_image == 100
    if rs:
        assert model.ranking_loss.delta == 0.5
    else:
        assert model.neg_pos_ratio == 3 and model.max_masks_per_image == 100
        assert model.box_loss_weight == 1.5 and model.mask_loss_weight == 6.125


# --------------------------------------------------------------------------------------------
# train_net.py
# --------------------------------------------------------------------------------------------

E2E_ITERS = 12


@pytest.mark.parametrize(
    "config, loss_keys, eval_keys",
    [
        ("configs/quick_schedules/rs_yolact_tiny.py", RS_KEYS, ["bbox/AP", "segm/AP"]),
        ("configs/quick_schedules/yolact_tiny.py", STOCK_KEYS, ["segm/AP"]),
    ],
)
def test_tiny_yolact_trains_through_train_net(tmp_path, config, loss_keys, eval_keys):
    from rs_detectron2.utils.testing import read_metrics, run_train_net

    out = str(tmp_path / "out")
    run_train_net(
        config,
        out,
        f"train.max_iter={E2E_ITERS}",
        f"train.eval_period={E2E_ITERS}",
        "train.log_period=4",
        f"train.checkpointer.period={E2E_ITERS}",
        "train.seed=0",
        "dataloader.test.dataset.names=rs_shapes_val",
    )
    records = read_metrics(out)
    train = [r for r in records if "total_loss" in r]
    assert len(train) >= 2
    for r in train:
        assert set(loss_keys) <= set(r), sorted(r)
        for k in loss_keys:
            assert r[k] == r[k] and abs(r[k]) < 1e6, (k, r[k])
    evaluation = [r for r in records if "segm/AP" in r]
    assert evaluation, "no mask AP in metrics.json"
    for key in eval_keys:
        assert 0.0 <= evaluation[-1][key] <= 100.0, key
    assert os.path.exists(os.path.join(out, "model_final.pth"))
