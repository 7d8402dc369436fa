"""SOLOv2 and RS-SOLOv2: grid targets, points NMS and Matrix NMS, inference, losses (empty ground
truth, the RS quality of each positive), every SOLOv2 config, and the tiny models through
train_net.py (one process and two Gloo processes with the global ranking pool)."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances

from rs_detectron2.losses import RankingLoss, RankSortLoss
from rs_detectron2.modeling.backbone import FrozenStatsBatchNorm2d
from rs_detectron2.modeling.solov2 import (
    DICE_EPS,
    RSSOLOv2,
    SOLOv2,
    center_regions,
    matrix_nms,
    points_nms,
    solov2_postprocess,
    solov2_targets,
)
from rs_detectron2.utils.testing import (
    assert_zero_losses_still_in_graph,
    batch,
    build_tiny,
    grad_sum,
    train_step,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_ROOT = os.path.join(REPO, "configs")
FULL = {
    "COCO-InstanceSegmentation/solov2_R_101_FPN_3x.py",
    "COCO-InstanceSegmentation/rs_solov2_R_101_FPN_3x.py",
    "COCO-InstanceSegmentation/solov2_light_R_34_FPN_448_3x.py",
    "COCO-InstanceSegmentation/rs_solov2_light_R_34_FPN_448_3x.py",
}
TINY = {
    "quick_schedules/solov2_tiny.py",
    "quick_schedules/rs_solov2_tiny.py",
    "quick_schedules/rs_solov2_released_tiny.py",
}
RS_KEYS = {"loss_solo_rank", "loss_solo_sort", "loss_solo_mask"}
STOCK_KEYS = {"loss_solo_cls", "loss_solo_mask"}


def load(name):
    return LazyConfig.load(os.path.join(CONFIG_ROOT, name))


def instances(size, boxes, classes, masks):
    """Ground truth of one image: XYXY ``boxes``, ``classes`` and (G, H, W) bool ``masks``."""
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_masks = BitMasks(masks)
    return inst


def box_masks(size, boxes):
    masks = torch.zeros((len(boxes),) + size, dtype=torch.bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = True
    return masks


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def test_center_region_is_the_scaled_box_clipped_to_the_3x3_cells_around_the_centre():
    # 128 x 128 canvas, S = 8: 16-pixel cells. Centre (70, 40): row 2, column 4.
    centers = torch.tensor([[70.0, 40.0], [70.0, 40.0], [5.0, 5.0]])
    boxes = torch.tensor(
        [
            [20.0, 30.0, 120.0, 50.0],  # 0.2 x half-sizes: 10 px wide, 2 px high
            [0.0, 0.0, 128.0, 128.0],  # 12.8 px: reaches rows 1-3, columns 3-5 (clipped)
            [0.0, 0.0, 10.0, 10.0],  # in the corner: one cell
        ]
    )
    region = center_regions(centers, boxes, (128, 128), grid=8, sigma=0.2)
    assert region.shape == (3, 8, 8)
    expected = torch.zeros(3, 8, 8, dtype=torch.bool)
    expected[0, 2, 3:6] = True
    expected[1, 1:4, 3:6] = True
    expected[2, 0, 0] = True
    assert torch.equal(region, expected)
    # a huge box is still clipped to 3 x 3
    big = center_regions(centers[:1], torch.tensor([[-500.0, -500, 600, 600]]), (128, 128), 8)
    assert int(big.sum()) == 9


def test_targets_levels_centre_of_mass_and_masks():
    size = (128, 128)
    # an L-shaped mask: its centre of mass is not its box centre
    mask = torch.zeros((1,) + size, dtype=torch.bool)
    mask[0, 16:80, 16:32] = True  # 64 x 16
    mask[0, 64:80, 32:80] = True  # 16 x 48
    inst = instances(size, [[16, 16, 80, 80]], [5], mask)  # sqrt area 64
    grids, ranges = [8, 4], [[1, 64], [65, 128]]
    t = solov2_targets([inst], size, num_classes=8, num_grids=grids, scale_ranges=ranges)
    assert t.labels.shape == (1, 64 + 16)
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    row, col = int(cy * 8 // 128), int(cx * 8 // 128)
    cells = torch.nonzero(t.labels[0] != 8).squeeze(1)
    assert (cells < 64).all(), "only the first level's range holds sqrt(area) = 64"
    assert row * 8 + col in cells.tolist()
    assert (t.labels[0, cells] == 5).all()
    region = center_regions(torch.stack([cx, cy])[None], inst.gt_boxes.tensor, size, 8)[0]
    assert cells.tolist() == torch.nonzero(region.flatten()).squeeze(1).tolist()
    assert t.pos_cell.tolist() == cells.tolist() and (t.pos_gt == 0).all()
    # mask target at 1/4: the L shape at 32 x 32
    assert t.gt_masks.shape == (1, 32, 32)
    expected = F.interpolate(mask[None].float(), size=(32, 32), mode="bilinear") >= 0.5
    assert torch.equal(t.gt_masks[0], expected[0, 0])
    # overlapping ranges: an object of sqrt(area) 64 on both levels of [[1, 64], [64, 128]]
    t2 = solov2_targets([inst], size, 8, grids, [[1, 64], [64, 128]])
    assert ((t2.labels[0, :64] != 8).any()) and ((t2.labels[0, 64:] != 8).any())


def test_targets_skip_empty_masks_and_empty_images():
    size = (64, 96)
    inst = instances(size, [[0, 0, 10, 10]], [2], torch.zeros((1,) + size, dtype=torch.bool))
    empty = instances(size, [], [], torch.zeros((0,) + size, dtype=torch.bool))
    t = solov2_targets([inst, empty], (64, 96), 3, [4], [[1, 1000]])
    assert t.labels.shape == (2, 16) and (t.labels == 3).all()
    assert t.pos_img.numel() == 0 and t.gt_masks.shape == (1, 16, 24)


def overlapping_pair():
    """One image with two objects of the same size on the same level whose centre regions share
    cells; the first-annotated one (class 1) lies below the second (class 4), so the second has
    the cells earlier in raster order."""
    size = (128, 128)
    boxes = [[30, 60, 90, 120], [30, 40, 90, 100]]
    return instances(size, boxes, [1, 4], box_masks(size, boxes)), size


@pytest.mark.parametrize("first_come", [True, False])
def test_overlapping_objects_and_raster_order(first_come):
    inst, size = overlapping_pair()
    t = solov2_targets([inst], size, 8, [8], [[1, 1000]], sigma=1.0, first_come=first_come)
    labels = t.labels[0]
    regions = center_regions(
        torch.tensor([[59.5, 89.5], [59.5, 69.5]]), inst.gt_boxes.tensor, size, 8, sigma=1.0
    ).flatten(1)
    shared = regions[0] & regions[1]
    assert shared.any() and (regions[0] & ~regions[1]).any()
    # pairs in raster order of the cells
    assert t.pos_cell.tolist() == sorted(t.pos_cell.tolist())
    if first_come:
        # the first-annotated object keeps shared cells; one pair per positive cell
        assert (labels[shared] == 1).all()
        assert t.pos_cell.tolist() == torch.nonzero(labels != 8).squeeze(1).tolist()
        # each pair's ground truth is the cell's own object (paired by index, not by order)
        assert torch.equal(inst.gt_classes[t.pos_gt], labels[t.pos_cell])
    else:
        # stock SOLOv2: the last object's class, a mask target for every object of the cell
        assert (labels[shared] == 4).all()
        assert len(t.pos_cell) == int(regions.sum())
        pairs = set(zip(t.pos_cell.tolist(), t.pos_gt.tolist()))
        expected = {(c, g) for g in range(2) for c in torch.nonzero(regions[g]).flatten().tolist()}
        assert pairs == expected


# --------------------------------------------------------------------------------------------
# Points NMS, Matrix NMS
# --------------------------------------------------------------------------------------------


def test_points_nms_keeps_maxima_of_self_up_left_and_up_left():
    heat = torch.tensor(
        [
            [0.1, 0.5, 0.2],
            [0.3, 0.4, 0.6],
            [0.9, 0.2, 0.6],
        ]
    )[None, None]
    kept = points_nms(heat)[0, 0]
    # (0,0) no neighbours; (0,1) > left; (1,0) > up; (1,2) > up 0.2, left 0.4, up-left 0.5;
    # (2,0) > up 0.3; (2,2) ties with its up neighbour 0.6: kept (equal to the maximum); the
    # others have a larger neighbour
    expected = torch.tensor([[0.1, 0.5, 0.0], [0.3, 0.0, 0.6], [0.9, 0.0, 0.6]])
    assert torch.equal(kept, expected)


def matrix_nms_loop(masks, labels, scores, kernel, sigma):
    """Matrix NMS by the definition, one pair at a time."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    m = masks.float().flatten(1)

    def iou(a, b):
        if labels[a] != labels[b]:
            return 0.0
        inter = float((m[a] * m[b]).sum())
        union = float(m[a].sum() + m[b].sum()) - inter
        return inter / union if union > 0 else 0.0

    def f(x):
        return math.exp(-sigma * x * x) if kernel == "gaussian" else 1.0 - x

    out = scores.clone()
    for pj, j in enumerate(order):
        decay = 1.0
        for pi in range(pj):
            i = order[pi]
            comp = max([iou(order[k], i) for k in range(pi)], default=0.0)
            # a fully suppressed i (linear, comp 1) suppresses nothing: the 1e-6 guard
            decay = min(decay, f(iou(i, j)) / max(f(comp), 1e-6))
        out[j] = scores[j] * decay
    return out


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_equals_the_loop(kernel):
    g = torch.Generator().manual_seed(0)
    n = 12
    masks = torch.zeros(n, 24, 24, dtype=torch.bool)
    for k in range(n):  # overlapping rectangles
        x, y = torch.randint(0, 12, (2,), generator=g).tolist()
        w, h = torch.randint(4, 12, (2,), generator=g).tolist()
        masks[k, y : y + h, x : x + w] = True
    masks[5] = masks[2]  # an exact duplicate
    labels = torch.randint(0, 2, (n,), generator=g)
    labels[5] = labels[2]
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=2.0)
    torch.testing.assert_close(got, matrix_nms_loop(masks, labels, scores, kernel, 2.0))
    assert float(got.max()) == float(scores.max())  # the top mask is never decayed
    assert (got <= scores).all()
    assert matrix_nms(masks[:0], labels[:0], scores[:0]).numel() == 0


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def test_inference_area_filter_maskness_matrix_nms_and_full_size_masks():
    model = build_tiny("solov2_tiny.py").eval()
    model.test_score_thresh, model.test_update_thresh = 0.1, 0.05
    num_cells = sum(s * s for s in model.num_grids)
    strides = [s for s, g in zip(model.strides, model.num_grids) for _ in range(g * g)]
    # mask features (E = 2, 8 x 8): channel 0 is +10 on a 4 x 4 block, channel 1 on a 2 x 2 block
    feats = torch.full((2, 8, 8), -10.0)
    feats[0, 2:6, 2:6] = 10.0
    feats[1, 0:2, 0:2] = 10.0
    kernels = torch.zeros(num_cells, 2)
    scores = torch.zeros(num_cells, 8)
    a = 0  # a level-1 cell (stride 8): block of area 16 > 8, kept
    b = num_cells - 1  # a level-5 cell (stride 32): area 4 <= 32, dropped
    c = 1  # the same block as a, same class, lower score: decayed by Matrix NMS
    d = 2  # the same block, another class: not decayed
    kernels[[a, b, c, d]] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    scores[a, 3], scores[b, 3], scores[c, 3], scores[d, 6] = 0.9, 0.95, 0.8, 0.7
    assert strides[a] == 8 and strides[b] == 32
    soft = model.inference_single_image(scores, kernels, feats, (30, 32))
    assert soft.image_size == (30, 32) and soft.pred_masks.shape[1:] == (8, 8)
    inst = solov2_postprocess(soft, 60, 64, (32, 32), model.test_mask_thresh)
    assert inst.image_size == (60, 64)
    assert inst.pred_masks.shape == (len(inst), 60, 64) and inst.pred_masks.dtype == torch.bool
    maskness = torch.sigmoid(torch.tensor(10.0))
    decay_c = math.exp(-2.0 * 1.0)  # IoU 1 with a, which no mask above decays
    expected = [(3, 0.9 * maskness), (6, 0.7 * maskness), (3, 0.8 * maskness * decay_c)]
    expected = [e for e in expected if e[1] >= 0.05]
    assert inst.pred_classes.tolist() == [e[0] for e in expected]
    torch.testing.assert_close(inst.scores, torch.stack([torch.as_tensor(e[1]) for e in expected]))
    # the 4 x 4 block at stride 4 of a 32 x 32 canvas, image 30 x 32, resized to 60 x 64
    box = inst.pred_boxes.tensor[0]
    torch.testing.assert_close(box, torch.tensor([16.0, 16.0, 48.0, 48.0]), atol=2.5, rtol=0)
    assert torch.equal(
        inst.pred_boxes.tensor, BitMasks(inst.pred_masks).get_bounding_boxes().tensor
    )


def test_model_inference_output_format():
    model = build_tiny("rs_solov2_tiny.py").eval()
    inputs = batch()
    inputs[1]["height"], inputs[1]["width"] = 200, 180
    with torch.no_grad():
        out = model(inputs)
    assert len(out) == 3
    inst = out[1]["instances"]
    assert inst.image_size == (200, 180) and 0 < len(inst) <= 20
    assert inst.pred_masks.shape[1:] == (200, 180)
    assert {"pred_masks", "pred_boxes", "scores", "pred_classes"} <= set(inst.get_fields())


# --------------------------------------------------------------------------------------------
# Training losses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["solov2", "rs_solov2"])
def test_losses_keys_finite_and_gradients(name):
    model = build_tiny(f"{name}_tiny.py")
    losses, storage = train_step(model, batch(masks=True))
    assert set(losses) == (RS_KEYS if name.startswith("rs_") else STOCK_KEYS)
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    if name.startswith("rs_"):
        assert not losses["loss_solo_sort"].requires_grad
        assert float(losses["loss_solo_rank"]) > 0.5  # untrained
        ref = losses["loss_solo_rank"] + losses["loss_solo_sort"]
        torch.testing.assert_close(losses["loss_solo_mask"].detach(), ref.detach())
    for key in ("cate_pred", "kernel_pred"):
        assert grad_sum(getattr(model.head, key)) > 0, key
    assert grad_sum(model.mask_head) > 0
    assert storage.history("num_pos_cells").latest() > 0


@pytest.mark.parametrize("name", ["solov2", "rs_solov2"])
@pytest.mark.parametrize("num_empty", [1, 3])
def test_empty_ground_truth(name, num_empty):
    model = build_tiny(f"{name}_tiny.py")
    losses, storage = train_step(model, batch(num_empty=num_empty, masks=True))
    for key, value in losses.items():
        assert torch.isfinite(value), key
    # every parameter is reached (DDP without find_unused_parameters needs it)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if num_empty == 3:
        assert storage.history("num_pos_cells").latest() == 0
        if name.startswith("rs_"):
            assert_zero_losses_still_in_graph(losses, {"head": model.head})
        else:  # focal loss on negatives only, no mask loss
            assert float(losses["loss_solo_mask"]) == 0.0 and float(losses["loss_solo_cls"]) > 0
    else:
        assert all(float(v) > 0 for k, v in losses.items() if k != "loss_solo_sort")


def test_rs_losses_under_autocast_are_float32_and_finite():
    """AMP: with a low-precision forward (bfloat16 CPU autocast standing in for CUDA float16) the
    RS losses come out in float32 and the gradients are finite."""
    from detectron2.utils.events import EventStorage

    model = build_tiny("rs_solov2_tiny.py")
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch(masks=True))
    assert set(losses) == RS_KEYS
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class Recorder(RankSortLoss):
    """RS that keeps its last targets."""

    def forward(self, logits, targets):
        self.targets = targets.detach().clone()
        return super().forward(logits, targets)


def test_rs_quality_is_the_dice_of_each_positives_mask_with_its_own_ground_truth():
    """Two objects share cells and the second-annotated one comes first in raster order (where
    the authors' code pairs qualities with the wrong cells): every positive entry's target is the
    soft Dice of its own cell's mask with the ground truth of the entry's class."""
    model = build_tiny("rs_solov2_tiny.py")
    model.ranking_loss = Recorder()
    captured = {}
    model.head.register_forward_hook(lambda m, i, o: captured.update(head=o))
    model.mask_head.register_forward_hook(lambda m, i, o: captured.update(feats=o))
    inst, size = overlapping_pair()
    image = torch.randint(0, 255, (3,) + size, dtype=torch.uint8)
    inputs = [{"image": image, "instances": inst}, batch(masks=True)[0]]
    train_step(model, inputs)

    targets = model.ranking_loss.targets  # (N, C, K)
    _, kernels = captured["head"]
    kernels = torch.cat([k.permute(0, 2, 3, 1).flatten(1, 2) for k in kernels], 1)
    feats = captured["feats"]
    pos = torch.nonzero(targets > 0)
    assert len(pos) > 4
    checked_first_image = 0
    for img, cell, cls in pos.tolist():
        gt = inputs[img]["instances"]
        (g,) = torch.nonzero(gt.gt_classes == cls).flatten().tolist()  # distinct classes
        h, w = gt.image_size
        gt_small = torch.zeros(feats.shape[-2:])
        gt_small[: h // 4, : w // 4] = (
            F.interpolate(
                gt.gt_masks.tensor[g][None, None].float(), size=(h // 4, w // 4), mode="bilinear"
            )[0, 0]
            >= 0.5
        ).float()
        mask = torch.sigmoid(torch.einsum("e,ehw->hw", kernels[img, cell], feats[img]))
        dice = 2 * (mask * gt_small).sum() / ((mask**2).sum() + gt_small.sum() + DICE_EPS)
        torch.testing.assert_close(targets[img, cell, cls], dice.detach(), atol=1e-5, rtol=1e-4)
        checked_first_image += img == 0
    # both objects of the first image are positives
    assert {int(c) for i, _, c in pos.tolist() if i == 0} == {1, 4}
    assert checked_first_image > 0


def test_rs_solov2_refuses_the_stock_cell_assignment():
    cfg = load("quick_schedules/rs_solov2_tiny.py")
    cfg.model.first_come = False
    with pytest.raises(ValueError, match="first_come"):
        instantiate(cfg.model)


def test_mismatched_class_count_is_an_error():
    cfg = load("quick_schedules/solov2_tiny.py")
    cfg.model.head.num_classes = 5
    with pytest.raises(ValueError, match="num_classes"):
        instantiate(cfg.model)


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def test_every_solov2_config_is_listed():
    from rs_detectron2 import model_zoo

    names = {c.replace(os.sep, "/") for c in model_zoo.list_configs() if "solov2" in c}
    assert names == FULL | TINY


@pytest.mark.parametrize("name", sorted(FULL | TINY))
def test_config_loads_instantiates_and_one_key_sets_the_class_count(name):
    cfg = LazyConfig.apply_overrides(load(name), ["model.num_classes=3"])
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg
    model = instantiate(cfg.model)
    rs = os.path.basename(name).startswith("rs_")
    assert type(model) is (RSSOLOv2 if rs else SOLOv2)
    assert model.num_classes == 3 and model.head.num_classes == 3
    assert model.head.cate_pred.out_channels == 3
    assert any(type(m).__name__.startswith("RS") for m in model.modules()) == rs
    losses = {type(m).__name__ for m in model.modules() if isinstance(m, RankingLoss)}
    assert losses == ({"RankSortLoss"} if rs else set())
    assert cfg.dataloader.train.mapper.instance_mask_format == "bitmask"


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_configs_follow_the_authors_recipe(name):
    """Spec of the authors' configs: R-101 (16 images) and light R-34 at 448 (32 images), 36
    epochs with steps at 27 and 33, warmup 500 from 0.01, clipping at 35; RS at 0.6 x the LR and
    score threshold 0.2 instead of 0.1."""
    cfg = load(name)
    base = os.path.basename(name)
    rs, light = base.startswith("rs_"), "light" in base
    batch_size = 32 if light else 16
    epoch = -(-117266 // batch_size)
    assert epoch == (3665 if light else 7330)
    train = cfg.dataloader.train
    assert train.total_batch_size == batch_size
    resize = train.mapper.augmentations[0]
    low = 352 if light else 640
    assert list(resize.short_edge_length) == list(range(low, low + 161, 32))
    assert resize.sample_style == "choice" and resize.max_size == (768 if light else 1333)
    test_resize = cfg.dataloader.test.mapper.augmentations[0]
    assert (test_resize.short_edge_length, test_resize.max_size) == (
        (448, 768) if light else (800, 1333)
    )
    assert cfg.train.max_iter == 36 * epoch == (131940 if light else 263880)
    assert list(cfg.lr_multiplier.scheduler.milestones) == [27 * epoch, 33 * epoch, 36 * epoch]
    assert cfg.lr_multiplier.warmup_length * cfg.train.max_iter == pytest.approx(500)
    assert cfg.lr_multiplier.warmup_factor == pytest.approx(0.01)
    assert cfg.train.clip_gradients.max_norm == 35 and cfg.train.clip_gradients.norm_type == 2
    lr = (0.02 if light else 0.01) * (0.6 if rs else 1.0)
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 1e-4

    m = cfg.model
    assert m.num_classes == 80
    assert m.backbone.bottom_up.stages.depth == (34 if light else 101)
    assert m.backbone.bottom_up.freeze_at == 2
    head = m.head
    assert list(head.num_grids) == [40, 36, 24, 16, 12]
    assert (head.num_convs, head.conv_dims, head.num_kernels) == (
        (2, 256, 128) if light else (4, 512, 256)
    )
    assert head.norm == "GN" and m.mask_head.conv_dims == 128
    ranges = [[1, 56], [28, 112], [56, 224], [112, 448], [224, 896]]
    if not light:
        ranges = [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]]
    assert [list(r) for r in m.scale_ranges] == ranges
    assert list(m.strides) == [8, 8, 16, 32, 32] and m.center_sigma == 0.2
    assert m.test_score_thresh == pytest.approx(0.2 if rs else 0.1)
    assert (m.test_mask_thresh, m.test_nms_pre, m.test_update_thresh) == (0.5, 500, 0.05)
    assert (m.test_nms_kernel, m.test_nms_sigma, m.max_detections_per_image) == (
        "gaussian",
        2.0,
        100,
    )
    assert m.first_come == rs
    if rs:
        assert m.ranking_loss.delta == 0.5
    else:
        assert (m.focal_loss_alpha, m.focal_loss_gamma, m.mask_loss_weight) == (0.25, 2.0, 3.0)
    assert cfg.optimizer.params.weight_decay_norm is None  # mmdet decays GN parameters too
    if light:  # torchvision weights as the authors ran them: RGB, BN statistics frozen
        assert train.mapper.image_format == cfg.dataloader.test.mapper.image_format == "RGB"
        assert list(m.pixel_std) == [58.395, 57.12, 57.375]
        assert m.backbone.bottom_up.stages.norm is FrozenStatsBatchNorm2d
        assert cfg.train.init_checkpoint == "torchvision_R_34.pkl"
    else:
        assert cfg.train.init_checkpoint.endswith("R-101.pkl")


def test_tiny_rs_pair_follows_the_released_lr_ratio_and_pairing():
    """RS trains at 0.6 x the stock tiny LR (the released recipe's ratio); the released-pairing
    leaf is rs_solov2_tiny.py with only ``model.pairing`` and its output folder changed."""
    stock = load("quick_schedules/solov2_tiny.py")
    rs = load("quick_schedules/rs_solov2_tiny.py")
    released = load("quick_schedules/rs_solov2_released_tiny.py")
    assert stock.optimizer.lr == pytest.approx(0.005)
    assert rs.optimizer.lr == pytest.approx(0.6 * stock.optimizer.lr)
    assert rs.model.pairing == "paper" and released.model.pairing == "released"
    assert released.train.output_dir != rs.train.output_dir
    released.model.pairing = "paper"
    released.train.output_dir = rs.train.output_dir
    assert LazyConfig.to_py(released) == LazyConfig.to_py(rs)


def test_light_backbone_loads_converted_torchvision_resnet34(tmp_path):
    import pickle

    import torchvision

    from detectron2.checkpoint import DetectionCheckpointer

    from rs_detectron2.model_zoo.convert_torchvision import convert_file

    torch.manual_seed(0)
    source = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), source)
    target = tmp_path / "torchvision_R_34.pkl"
    convert_file(str(source), str(target))
    cfg = load("COCO-InstanceSegmentation/rs_solov2_light_R_34_FPN_448_3x.py")
    model = instantiate(cfg.model)
    DetectionCheckpointer(model).load(str(target))
    with open(target, "rb") as f:
        weights = pickle.load(f)["model"]
    state = model.backbone.bottom_up.state_dict()
    loaded = [k for k in state if k in weights]
    assert len(loaded) >= 100
    for k in loaded:
        torch.testing.assert_close(state[k], torch.as_tensor(weights[k]))


# --------------------------------------------------------------------------------------------
# End to end through train_net.py
# --------------------------------------------------------------------------------------------

E2E_ITERS = 12


@pytest.mark.parametrize("name", ["rs_solov2", "solov2"])
def test_tiny_model_trains_through_train_net_and_reports_mask_ap(name, tmp_path):
    from rs_detectron2.utils.testing import read_metrics, run_train_net

    out = str(tmp_path / "out")
    run_train_net(
        f"configs/quick_schedules/{name}_tiny.py",
        out,
        f"train.max_iter={E2E_ITERS}",
        f"train.eval_period={E2E_ITERS if name.startswith('rs_') else 0}",
        "train.log_period=4",
        "train.checkpointer.period=100000",
        "train.seed=0",
    )
    records = read_metrics(out)
    train = [r for r in records if "total_loss" in r]
    keys = RS_KEYS if name.startswith("rs_") else STOCK_KEYS
    assert len(train) == E2E_ITERS // 4
    for r in train:
        for k in keys | {"total_loss"}:
            assert math.isfinite(r[k]), (k, r)
    if name.startswith("rs_"):
        evaluation = [r for r in records if "segm/AP" in r]
        assert evaluation, records[-1]
        assert 0.0 <= evaluation[-1]["segm/AP"] <= 100.0
        assert 0.0 <= evaluation[-1]["bbox/AP"] <= 100.0
