"""RS heads inside tiny two-stage models: loss keys, finiteness, gradient flow, empty GT, IoU-0."""

import pytest
import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from rs_detectron2.losses import RankingLoss, RankSortLoss, rank_sort_loss
from rs_detectron2.model_zoo import get_config
from rs_detectron2.modeling import RSRPN, RSFastRCNNOutputLayers
from rs_detectron2.modeling.roi_heads import BOX_SCORE_FIELD, rs_mask_loss
from rs_detectron2.utils.testing import (
    assert_zero_losses_still_in_graph,
    batch,
    build_tiny,
    grad_sum,
    train_step,
)

RS_MODELS = {
    "rs_faster_rcnn_tiny.py": ["loss_rpn", "loss_rcnn"],
    "rs_mask_rcnn_tiny.py": ["loss_rpn", "loss_rcnn"],
    "rs_cascade_rcnn_tiny.py": ["loss_rpn"] + [f"loss_rcnn_{{}}_stage{i}" for i in range(3)],
}


def expected_keys(config_name):
    keys = set()
    for prefix in RS_MODELS[config_name]:
        for part in ("rank", "sort", "box"):
            keys.add(prefix.format(part) if "{}" in prefix else f"{prefix}_{part}")
    if "mask" in config_name:
        keys.add("loss_rcnn_mask")
    return keys


def head_modules(model):
    """Classifier and regressor layers of every RS head in the model."""
    rpn = model.proposal_generator.rpn_head
    mods = {"rpn_cls": rpn.objectness_logits, "rpn_reg": rpn.anchor_deltas}
    roi = model.roi_heads
    predictors = (
        roi.box_predictor
        if isinstance(roi.box_predictor, torch.nn.ModuleList)
        else [roi.box_predictor]
    )
    for i, p in enumerate(predictors):
        mods[f"rcnn{i}_cls"] = p.cls_score
        mods[f"rcnn{i}_reg"] = p.bbox_pred
    if getattr(roi, "mask_on", False):
        mods["mask"] = roi.mask_head.predictor
    return mods


@pytest.mark.parametrize("config_name", sorted(RS_MODELS))
def test_losses_keys_finite_and_gradients(config_name):
    model = build_tiny(config_name)
    losses, storage = train_step(model, batch(masks=True))
    assert set(losses) == expected_keys(config_name)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        if name.endswith("_sort"):
            assert not value.requires_grad, name
    for name, module in head_modules(model).items():
        assert grad_sum(module) > 0, f"no gradient reached {name}"
    # The box (and mask) losses are balanced to rank + sort of their own head.
    for key in losses:
        if key.endswith("_box") or key.endswith("_mask"):
            rank_key = key.replace("_box", "_rank").replace("loss_rcnn_mask", "loss_rcnn_rank")
            ref = losses[rank_key] + losses[rank_key.replace("_rank", "_sort")]
            torch.testing.assert_close(losses[key].detach(), ref.detach(), rtol=1e-5, atol=1e-7)
    assert "rpn/num_pos_anchors" in storage.histories()


@pytest.mark.parametrize("config_name", sorted(RS_MODELS))
@pytest.mark.parametrize("num_empty", [1, 3])
def test_empty_ground_truth(config_name, num_empty):
    model = build_tiny(config_name)
    losses, _ = train_step(model, batch(num_empty=num_empty, masks=True))
    assert set(losses) == expected_keys(config_name)
    for name, value in losses.items():
        assert torch.isfinite(value), name
    if num_empty == 3:
        # No positives anywhere: rank / sort / box are 0 and still part of the graph.
        assert_zero_losses_still_in_graph(losses, head_modules(model))


def test_rpn_loss_weight_and_no_sampling():
    model = build_tiny("rs_faster_rcnn_tiny.py")
    rpn = model.proposal_generator
    assert isinstance(rpn, RSRPN) and rpn.loss_weight == pytest.approx(0.2)
    labels = torch.tensor([1, 0, 0, -1, 1, 0, 0, 0])
    assert torch.equal(rpn._subsample_labels(labels.clone()), labels)


def _predictor(num_classes=3, agnostic=False):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    return RSFastRCNNOutputLayers(
        ShapeSpec(channels=8),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        num_classes=num_classes,
        cls_agnostic_bbox_reg=agnostic,
    )


def _proposals(boxes, gt_boxes, gt_classes):
    p = Instances((200, 200))
    p.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    p.gt_boxes = Boxes(torch.tensor(gt_boxes, dtype=torch.float32))
    p.gt_classes = torch.tensor(gt_classes)
    return p


def test_iou_zero_positive_stays_positive():
    """A foreground RoI whose regressed box misses its GT entirely is still ranked as a positive."""
    predictor = _predictor()
    # RoI 0 is foreground (class 1); its deltas move the box far to the right: IoU 0 with its GT.
    proposals = [
        _proposals(
            [[10, 10, 50, 50], [100, 100, 150, 150], [0, 0, 30, 30]],
            [[10, 10, 50, 50], [0, 0, 1, 1], [0, 0, 1, 1]],
            [1, 3, 3],  # 3 = background
        )
    ]
    scores = torch.tensor([[0.0, -1.0, 0.0], [2.0, 3.0, 1.0], [0.5, 0.5, 0.5]], requires_grad=True)
    deltas = torch.zeros(3, 12)
    deltas[0, 4] = 40.0  # class 1's dx: with weight 10, a shift of 4 box widths, no overlap
    deltas.requires_grad_(True)
    with EventStorage(0):
        losses = predictor.losses((scores, deltas), proposals)
    assert float(losses["loss_rcnn_rank"]) > 0  # only possible if RoI 0 / class 1 is a positive
    losses["loss_rcnn_rank"].backward()
    assert float(scores.grad[0, 1]) < 0  # pulled up, as a positive
    assert float(scores.grad[1, 1]) > 0  # the negatives scored above it are pushed down
    # losses() leaves its inputs as they were: the mask weights are attached by the ROI heads
    assert not proposals[0].has(BOX_SCORE_FIELD)


def test_rcnn_targets_follow_regressed_iou():
    """The RS target of a positive is the IoU of its regressed (GT-class) box with its GT."""
    predictor = _predictor(num_classes=2, agnostic=True)
    proposals = [_proposals([[0, 0, 100, 100], [0, 0, 50, 100]], [[0, 0, 100, 100]] * 2, [0, 1])]
    scores = torch.tensor([[1.0, -1.0], [-1.0, 0.5]], requires_grad=True)
    deltas = torch.zeros(2, 4, requires_grad=True)
    with EventStorage(0):
        losses = predictor.losses((scores, deltas), proposals)
    # Regressed boxes equal the proposals: IoUs 1.0 and 0.5.
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    rank, sort = rank_sort_loss(scores.detach(), targets)
    torch.testing.assert_close(losses["loss_rcnn_rank"].detach(), rank)
    torch.testing.assert_close(losses["loss_rcnn_sort"], sort)


def test_rcnn_inference_scores_are_sigmoid_with_zero_background():
    predictor = _predictor(num_classes=3)
    proposals = [_proposals([[0, 0, 10, 10]] * 2, [[0, 0, 10, 10]] * 2, [0, 0])]
    logits = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.0, 0.0]])
    (probs,) = predictor.predict_probs((logits, torch.zeros(2, 12)), proposals)
    assert probs.shape == (2, 4)
    torch.testing.assert_close(probs[:, :3], logits.sigmoid())
    assert torch.all(probs[:, 3] == 0)
    assert predictor.cls_score.out_features == 3


def test_mask_cap_keeps_at_most_max_total():
    from rs_detectron2.modeling.roi_heads import cap_instances

    insts = []
    for n in (150, 100, 0):
        p = Instances((10, 10))
        p.proposal_boxes = Boxes(torch.zeros(n, 4))
        p.idx = torch.arange(n)
        insts.append(p)
    torch.manual_seed(0)
    capped = cap_instances(insts, 200)
    assert sum(len(x) for x in capped) == 200
    for before, after in zip(insts, capped):
        assert torch.all(after.idx[1:] > after.idx[:-1])  # a subset in the original order
        assert set(after.idx.tolist()) <= set(before.idx.tolist())
    assert cap_instances(insts, 1000) is insts


def test_cascade_inference_averages_logits():
    """RS-Cascade scores are sigmoid(mean of the stages' logits), not the mean of sigmoids."""
    model = build_tiny("rs_cascade_rcnn_tiny.py")
    model.eval()
    roi = model.roi_heads
    for p in roi.box_predictor:
        p.test_score_thresh = 0.0
    captured = []
    orig = type(roi.box_predictor[0]).forward

    def spy(self, x):
        out = orig(self, x)
        captured.append(out[0].detach())
        return out

    inputs = [{"image": torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)}]
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(roi.box_predictor[0]), "forward", spy)
        out = model(inputs)[0]["instances"]
    assert len(captured) == 3
    expected = (sum(captured) / 3).sigmoid()
    # every output score must be one of the averaged-logit probabilities
    for s in out.scores[:20]:
        assert torch.isclose(expected, s, atol=1e-6).any()
    mean_of_probs = sum(c.sigmoid() for c in captured) / 3
    assert not torch.allclose(expected, mean_of_probs)


def test_roi_heads_give_the_mask_head_each_rois_box_score():
    """RSStandardROIHeads attaches each training RoI's detached max-class box score before the
    mask head runs (the weights of the score-weighted mask loss)."""
    model = build_tiny("rs_mask_rcnn_tiny.py")
    roi = model.roi_heads
    seen = {}
    real_forward = roi.mask_head.forward

    def recording_forward(x, instances):
        seen["instances"] = instances
        return real_forward(x, instances)

    roi.mask_head.forward = recording_forward
    losses, _ = train_step(model, batch(masks=True))
    instances = seen["instances"]
    assert sum(len(i) for i in instances) > 0
    scores = torch.cat([i.get(BOX_SCORE_FIELD) for i in instances])
    assert not scores.requires_grad and bool(((scores > 0) & (scores < 1)).all())
    assert "loss_rcnn_mask" in losses


def test_mask_loss_without_box_scores_is_an_error():
    inst = Instances((16, 16))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    inst.gt_classes = torch.tensor([0])
    with pytest.raises(ValueError, match="RSStandardROIHeads"):
        rs_mask_loss(torch.zeros(1, 1, 4, 4), [inst])


class ConstantWeightLoss(RankingLoss):
    """A stand-in for another ranking loss: plain BCE on binary labels and a box loss with a fixed
    weight, so a test can see that heads use whatever loss the config gives them."""

    def __init__(self, box_weight=2.0):
        super().__init__()
        self.box_weight = box_weight

    def head_losses(self, logits, targets, loc_losses, loc_weights, *, prefix, loc_name="box"):
        keep = targets >= 0
        cls = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[keep], (targets[keep] > 0).float()
        )
        box = loc_losses.sum() / max(len(loc_losses), 1)
        return {f"{prefix}_bce": cls, f"{prefix}_{loc_name}": self.box_weight * box}

    def balance_auxiliary(self, loss, head_losses):
        return 3.0 * loss


def test_another_ranking_loss_is_swapped_in_by_config_alone():
    cfg = get_config("quick_schedules/rs_mask_rcnn_tiny.py")
    cfg.model.proposal_generator.ranking_loss = L(ConstantWeightLoss)(box_weight=1.0)
    cfg.model.roi_heads.box_predictor.ranking_loss = L(ConstantWeightLoss)()
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    assert model.roi_heads.box_predictor.ranking_loss.box_weight == 2.0
    losses, _ = train_step(model, batch(masks=True))
    assert set(losses) == {
        "loss_rpn_bce",
        "loss_rpn_box",
        "loss_rcnn_bce",
        "loss_rcnn_box",
        "loss_rcnn_mask",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    # the mask loss is weighted by the box predictor's loss object (3 x the unweighted Dice loss)
    assert float(losses["loss_rcnn_mask"]) > 0


@pytest.mark.parametrize("config_name", sorted(RS_MODELS))
def test_rs_loss_options_reach_every_head(config_name):
    cfg = get_config(f"quick_schedules/{config_name}")
    cfg = LazyConfig.apply_overrides(cfg, ["model.proposal_generator.ranking_loss.delta=0.25"])
    model = instantiate(cfg.model)
    assert model.proposal_generator.ranking_loss.delta == 0.25
    predictors = model.roi_heads.box_predictor
    predictors = predictors if isinstance(predictors, torch.nn.ModuleList) else [predictors]
    for predictor in predictors:
        assert isinstance(predictor.ranking_loss, RankSortLoss)
        assert predictor.ranking_loss.delta == 0.5 and predictor.ranking_loss.pool == "local"
