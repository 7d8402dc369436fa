"""Parity of the models with the authors' mmdetection code: each test pins one closed difference
(its number in the comment) and fails on Detectron2's behaviour, which stays available as an
option."""

import math

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from rs_detectron2.model_zoo import get_config, get_config_file
from rs_detectron2.modeling.anchor_validity import valid_anchor_mask
from rs_detectron2.modeling.backbone import LastLevelP6P7NoReLU
from rs_detectron2.modeling.matcher import MinIoULowQualityMatcher
from rs_detectron2.modeling.meta_arch import rs_dense_detector
from rs_detectron2.modeling.roi_heads import GT_PROPOSAL_FIELD, GTProposalCascadeROIHeads
from rs_detectron2.utils.testing import batch, build_tiny

MASK_CONFIGS = [
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
    "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x.py",
    "LVISv1-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_rfs.py",
]
FASTER_CONFIGS = [
    "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py",
]
CASCADE_CONFIGS = [
    "COCO-Detection/cascade_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/rs_cascade_rcnn_R_50_FPN_1x.py",
]


# --------------------------------------------------------------------------------------------
# #4, #19: low-quality matches need a minimum IoU and go to that ground truth
# --------------------------------------------------------------------------------------------


def mmdet_max_iou_assign(iou, neg_thr, pos_thr, min_pos_iou):
    """mmdetection's ``MaxIoUAssigner.assign_wrt_overlaps`` (match_low_quality=True,
    gt_max_assign_all=True) as a loop: returns (matched gt, label in {-1, 0, 1})."""
    num_gts, num_preds = iou.shape
    labels = torch.full((num_preds,), -1, dtype=torch.int8)
    best, matched = iou.max(dim=0)
    labels[best < neg_thr] = 0
    labels[best >= pos_thr] = 1
    for g in range(num_gts):
        gt_best = iou[g].max()
        if gt_best >= min_pos_iou:
            for p in range(num_preds):
                if iou[g, p] == gt_best:
                    matched[p], labels[p] = g, 1
    return matched, labels


def test_matcher_low_quality_rule_as_mmdet():
    # #4: a GT whose best IoU is 0.25 gets no low-quality positive (Detectron2 gives it one), and
    # a low-quality positive goes to the GT it is the best match of (Detectron2 keeps its own
    # best GT); ties between GTs go to the last one, as mmdetection's loop.
    iou = torch.tensor(
        [
            [0.80, 0.50, 0.10, 0.00],
            [0.00, 0.45, 0.20, 0.00],
            [0.00, 0.00, 0.25, 0.10],
        ]
    )
    matches, labels = MinIoULowQualityMatcher([0.3, 0.7], [0, -1, 1], True, 0.3)(iou)
    assert labels.tolist() == [1, 1, 0, 0]
    assert matches[:2].tolist() == [0, 1]
    old_matches, old_labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou)
    assert old_labels.tolist() == [1, 1, 1, 0] and old_matches[1] == 0

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        # coarse IoUs, so that many GTs share their best prediction (ties)
        iou = torch.randint(0, 9, (4, 30), generator=generator).float() / 10
        for thresholds, labels_, min_iou in (([0.3, 0.7], [0, -1, 1], 0.3), ([0.5], [0, 1], 0.5)):
            got = MinIoULowQualityMatcher(thresholds, labels_, True, min_iou)(iou)
            want = mmdet_max_iou_assign(iou, thresholds[0], thresholds[-1], min_iou)
            assert torch.equal(got[1], want[1])
            positive = want[1] == 1
            assert torch.equal(got[0][positive], want[0][positive])


def test_matcher_without_low_quality_is_detectron2s_and_handles_no_gt():
    iou = torch.rand(3, 50, generator=torch.Generator().manual_seed(1))
    ours = MinIoULowQualityMatcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=False)(iou)
    d2 = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=False)(iou)
    assert all(torch.equal(a, b) for a, b in zip(ours, d2, strict=True))
    matches, labels = MinIoULowQualityMatcher([0.3, 0.7], [0, -1, 1])(torch.zeros(0, 5))
    assert labels.tolist() == [0] * 5 and matches.tolist() == [0] * 5


@pytest.mark.parametrize("name", MASK_CONFIGS + FASTER_CONFIGS + CASCADE_CONFIGS)
def test_configs_use_the_authors_matchers(name):
    # #4 (RPN, every two-stage config and its stock baseline) and #19 (the R-CNN head of Mask
    # R-CNN only: the authors' Faster R-CNN config has no low-quality matches there).
    model = get_config(name).model
    rpn_matcher = instantiate(model.proposal_generator.anchor_matcher)
    assert isinstance(rpn_matcher, MinIoULowQualityMatcher)
    assert rpn_matcher.allow_low_quality_matches and rpn_matcher.min_low_quality_iou == 0.3
    assert rpn_matcher.thresholds[1:-1] == [0.3, 0.7]
    if name in CASCADE_CONFIGS:
        return
    rcnn_matcher = instantiate(model.roi_heads.proposal_matcher)
    assert rcnn_matcher.thresholds[1:-1] == [0.5]
    assert rcnn_matcher.allow_low_quality_matches == (name in MASK_CONFIGS)
    if name in MASK_CONFIGS:
        assert isinstance(rcnn_matcher, MinIoULowQualityMatcher)
        assert rcnn_matcher.min_low_quality_iou == 0.5


# --------------------------------------------------------------------------------------------
# #5: anchors on the batch padding are ignored
# --------------------------------------------------------------------------------------------


def features_of(height, width, strides, channels=4):
    return [torch.zeros(1, channels, math.ceil(height / s), math.ceil(width / s)) for s in strides]


def mmdet_valid_flags(features, strides, num_anchors, image_size):
    """mmdetection's ``valid_flags`` on the image padded to 32: the first ceil(pad / stride) rows
    and columns of each level, every anchor of a location alike; (R,) bool."""
    pad_h, pad_w = (math.ceil(v / 32) * 32 for v in image_size)
    flags = []
    for feature, stride in zip(features, strides, strict=True):
        h, w = feature.shape[-2:]
        rows = torch.arange(h) < math.ceil(pad_h / stride)
        cols = torch.arange(w) < math.ceil(pad_w / stride)
        flags.append((rows[:, None] & cols[None, :]).flatten().repeat_interleave(num_anchors))
    return torch.cat(flags)


def test_valid_anchor_mask_is_mmdets_valid_flags():
    strides = [4, 8, 16, 32, 64]
    features = features_of(256, 224, strides)
    for offset in (0.0, 0.5):
        gen = DefaultAnchorGenerator(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=strides,
            offset=offset,
        )
        anchors = gen(features)
        for image_size in [(256, 224), (100, 70), (97, 161), (1, 1)]:
            got = valid_anchor_mask(anchors, strides, offset, image_size)
            want = mmdet_valid_flags(features, strides, 3, image_size)
            assert torch.equal(got, want), (offset, image_size)


def gt_instances(image_size, boxes, classes):
    inst = Instances(image_size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes = torch.tensor(classes)
    return inst


def test_rpn_ignores_anchors_on_the_padding():
    # #5: an image of 60 x 90 in a 128 x 128 batch: its anchors beyond the 64 x 96 padded image
    # are ignored (-1); Detectron2 labels them, mostly negatives (0)
    rpn = instantiate(get_config("quick_schedules/rs_faster_rcnn_tiny.py").model.proposal_generator)
    assert rpn.ignore_padding_anchors
    strides = rpn.anchor_generator.strides
    features = features_of(128, 128, strides)
    anchors = rpn.anchor_generator(features)
    inst = gt_instances((60, 90), [[10, 10, 50, 40], [60, 20, 88, 58]], [0, 1])
    valid = mmdet_valid_flags(features, strides, rpn.anchor_generator.num_anchors[0], (60, 90))
    assert 0 < valid.sum() < len(valid)
    (labels,), (boxes,) = rpn.label_and_sample_anchors(anchors, [inst])
    assert (labels[~valid] == -1).all() and (boxes[~valid] == 0).all()
    # the valid anchors are labelled as Detectron2's RPN labels them alone
    all_anchors = Boxes.cat(anchors)
    rpn.ignore_padding_anchors = False
    (valid_labels,), _ = rpn.label_and_sample_anchors([all_anchors[valid]], [inst])
    assert torch.equal(labels[valid], valid_labels) and (valid_labels == 1).any()
    (old_labels,), _ = rpn.label_and_sample_anchors(anchors, [inst])
    assert (old_labels[~valid] == 0).any()


@pytest.fixture(scope="module")
def atss():
    return build_tiny("rs_atss_tiny.py")


def test_dense_assignment_ignores_anchors_on_the_padding(atss):
    # #5: the assigner sees the valid anchors only (ATSS's per-level top-k among them), the
    # others are ignored (-1) instead of being background (K)
    gen = atss.anchor_generator
    features = features_of(128, 128, gen.strides)
    anchors = gen(features)
    inst = gt_instances((60, 90), [[50, 20, 89, 59]], [2])
    valid = mmdet_valid_flags(features, gen.strides, gen.num_anchors[0], (60, 90))
    (labels,), _ = atss.label_anchors(anchors, [inst], image_sizes=[(60, 90)])
    assert (labels[~valid] == -1).all()
    counts = [int(v.sum()) for v in valid.split([len(a) for a in anchors])]
    all_anchors = Boxes.cat(anchors)
    matched, direct = atss.assigner(all_anchors[valid], counts, inst)
    assert torch.equal(labels[valid] == 2, direct == 1) and (direct == 1).any()
    atss.ignore_padding_anchors = False
    try:
        (old_labels,), _ = atss.label_anchors(anchors, [inst], image_sizes=[(60, 90)])
    finally:
        atss.ignore_padding_anchors = True
    assert (old_labels[~valid] == atss.num_classes).any()


# --------------------------------------------------------------------------------------------
# #10: P7 from P6 without a ReLU (RS-ATSS, RS-PAA)
# --------------------------------------------------------------------------------------------


def test_p7_from_p6_without_relu():
    torch.manual_seed(0)
    ours, d2 = LastLevelP6P7NoReLU(8, 8, in_feature="p5"), LastLevelP6P7(8, 8, in_feature="p5")
    d2.load_state_dict(ours.state_dict())
    x = torch.randn(1, 8, 16, 16)
    (p6, p7), (d2_p6, d2_p7) = ours(x), d2(x)
    torch.testing.assert_close(p6, d2_p6)
    assert (p6 < 0).any()
    torch.testing.assert_close(p7, ours.p7(p6))
    assert not torch.allclose(p7, d2_p7)


@pytest.mark.parametrize("name", ["rs_atss", "rs_paa"])
def test_dense_configs_build_p7_without_relu(name, atss):
    full = get_config(f"COCO-Detection/{name}_R_50_FPN_1x.py").model
    tiny = get_config(f"quick_schedules/{name}_tiny.py").model
    for model in (full, tiny):
        assert model.backbone.top_block._target_ is LastLevelP6P7NoReLU
    assert type(atss.backbone.top_block) is LastLevelP6P7NoReLU


# --------------------------------------------------------------------------------------------
# #11, #12, #13: test-time candidates of RS-ATSS / RS-PAA
# --------------------------------------------------------------------------------------------

# one level, 4 anchors x 3 classes; the top 2 anchors by their best score are 0 and 2
ANCHORS = [[0, 0, 20, 20], [10, 10, 30, 30], [40, 40, 60, 60], [5, 40, 25, 60]]
SCORES = [[0.9, 0.6, 0.02], [0.8, 0.7, 0.3], [0.85, 0.01, 0.01], [0.1, 0.1, 0.1]]


def anchor_index(box):
    """The anchor a zero-delta box comes from (the top-left corners differ and are not clipped)."""
    return [a[:2] for a in ANCHORS].index([round(v) for v in box[:2]])


def decode(model, selection, clip, image_size=(50, 50)):
    model.candidate_selection, model.clip_boxes_before_nms = selection, clip
    pred = model._decode_per_level_predictions(
        Boxes(torch.tensor(ANCHORS, dtype=torch.float32)),
        torch.tensor(SCORES),
        torch.zeros(4, 4),
        0.05,
        2,
        image_size,
    )
    anchor_of = [anchor_index(box) for box in pred.pred_boxes.tensor.tolist()]
    return pred, {(a, int(c)) for a, c in zip(anchor_of, pred.pred_classes, strict=True)}


@pytest.fixture
def atss_eval(atss):
    atss.eval()
    yield atss
    atss.train()
    atss.candidate_selection, atss.clip_boxes_before_nms = "anchor", True


def test_candidates_are_top_anchors_then_every_class_above_threshold(atss_eval):
    # #11: the top 2 anchors by max score (0 and 2), then every class above 0.05 of each; the
    # Detectron2 rule takes the top 2 (anchor, class) pairs above 0.05 instead
    pred, pairs = decode(atss_eval, "anchor", clip=False, image_size=(100, 100))
    assert pairs == {(0, 0), (0, 1), (2, 0)}
    by_pair = {(a, c): s for (a, c), s in zip(sorted(pairs), [0.9, 0.6, 0.85], strict=True)}
    for box, c, s in zip(pred.pred_boxes.tensor.tolist(), pred.pred_classes, pred.scores):
        assert float(s) == pytest.approx(by_pair[(anchor_index(box), int(c))])
    _, old_pairs = decode(atss_eval, "pair", clip=False, image_size=(100, 100))
    assert old_pairs == {(0, 0), (2, 0)}


def test_candidate_boxes_are_clipped_before_nms(atss_eval):
    # #12: anchor 2 reaches 60 in a 50 x 50 image
    pred, _ = decode(atss_eval, "anchor", clip=True)
    assert pred.pred_boxes.tensor.max() == 50
    old, _ = decode(atss_eval, "anchor", clip=False)
    assert old.pred_boxes.tensor.max() == 60


def test_score_voting_votes_over_the_authors_candidates(atss_eval, monkeypatch):
    # #13: PAA's voting sees every class above the threshold of the top anchors, clipped
    seen = []

    def spy(detections, candidates, sigma):
        seen.append(candidates)
        return detections.pred_boxes.tensor.clone()

    monkeypatch.setattr(rs_dense_detector, "score_voting", spy)
    model = atss_eval
    model.score_voting, model.test_topk_candidates, model.test_score_thresh = True, 2, 0.05
    try:
        for selection, clip in (("anchor", True), ("pair", False)):
            model.candidate_selection, model.clip_boxes_before_nms = selection, clip
            model.inference_single_image(
                [Boxes(torch.tensor(ANCHORS, dtype=torch.float32))],
                [torch.tensor(SCORES)],
                [torch.zeros(4, 4)],
                (50, 50),
            )
    finally:
        model.score_voting, model.test_topk_candidates = False, 1000
    authors, detectron2 = seen
    assert len(authors) == 3 and authors.pred_boxes.tensor.max() == 50
    assert len(detectron2) == 2 and detectron2.pred_boxes.tensor.max() == 60


def test_dense_configs_select_candidates_as_the_authors():
    for name in ("rs_atss", "rs_paa"):
        model = get_config(f"COCO-Detection/{name}_R_50_FPN_1x.py").model
        assert model.candidate_selection == "anchor" and model.clip_boxes_before_nms is True
        assert model.ignore_padding_anchors is True
    # RS-RetinaNet has no authors' config: its test-time rule is its stock baseline's
    model = get_config("COCO-Detection/rs_retinanet_R_50_FPN_1x.py").model
    assert model.candidate_selection == "pair" and model.clip_boxes_before_nms is False
    assert model.ignore_padding_anchors is True


# --------------------------------------------------------------------------------------------
# #14: weight decay on GN, tower convs without bias (RS-ATSS, RS-PAA)
# --------------------------------------------------------------------------------------------


def test_dense_tower_convs_have_no_bias(atss):
    towers = [atss.head.cls_subnet, atss.head.bbox_subnet]
    convs = [m for t in towers for m in t if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)
    assert atss.head.cls_score.bias is not None and atss.head.bbox_pred.bias is not None
    assert any(isinstance(m, nn.GroupNorm) for t in towers for m in t)
    for name in ("rs_atss", "rs_paa"):
        head = get_config(f"COCO-Detection/{name}_R_50_FPN_1x.py").model.head
        assert head.tower_conv_bias is False
    cfg = get_config("quick_schedules/rs_atss_tiny.py").model.head
    cfg.tower_conv_bias = True  # Detectron2's head
    assert all(m.bias is not None for m in instantiate(cfg).cls_subnet if isinstance(m, nn.Conv2d))


def weight_decay_of_norm_params(optimizer_file, model):
    sgd = LazyConfig.load(get_config_file(optimizer_file)).SGD
    sgd.params.model = model
    optimizer = instantiate(sgd)
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, nn.GroupNorm) for p in m.parameters()
    }
    decays = {
        g["weight_decay"]
        for g in optimizer.param_groups
        for p in g["params"]
        if id(p) in norm_params
    }
    return decays, optimizer


def test_dense_optimizer_decays_norm_parameters():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.GroupNorm(4, 8))
    decays, optimizer = weight_decay_of_norm_params("common/optim_dense.py", model)
    assert decays == {1e-4} and optimizer.defaults["lr"] == 0.008
    old, _ = weight_decay_of_norm_params("common/optim.py", model)
    assert old == {0.0}


# --------------------------------------------------------------------------------------------
# #7: every cascade stage trains on the exact ground-truth boxes
# --------------------------------------------------------------------------------------------


def stage_proposals(model, mode):
    """Training forward of the ROI heads; returns each later stage's proposals as matched."""
    model.roi_heads.add_gt_as_proposals = mode
    captured = []
    orig = model.roi_heads._match_and_label_boxes

    def spy(proposals, stage, targets):
        out = orig(proposals, stage, targets)
        captured.append([p.proposal_boxes.tensor.clone() for p in out])
        return out

    inputs = batch()
    with EventStorage(0), torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(model.roi_heads, "_match_and_label_boxes", spy)
        first = model.roi_heads.label_and_sample_proposals
        stage0 = []

        def record(proposals, targets):
            out = first(proposals, targets)
            stage0.extend(out)
            return out

        mp.setattr(model.roi_heads, "label_and_sample_proposals", record)
        model(inputs)
    return stage0, captured, [x["instances"].gt_boxes.tensor for x in inputs]


@pytest.mark.parametrize("name", ["rs_cascade_rcnn", "cascade_rcnn"])
def test_cascade_stages_get_the_exact_ground_truth(name):
    model = build_tiny(f"{name}_tiny.py")
    assert isinstance(model.roi_heads, GTProposalCascadeROIHeads)
    assert model.roi_heads.add_gt_as_proposals == "every_stage"
    stage0, later, gts = stage_proposals(model, "every_stage")
    assert len(later) == 2
    for image, (props, gt) in enumerate(zip(stage0, gts, strict=True)):
        is_gt = props.get(GT_PROPOSAL_FIELD)
        assert int(is_gt.sum()) == len(gt)
        for stage_boxes in later:
            boxes = stage_boxes[image]
            # the refined non-GT proposals, then the exact GT boxes
            assert len(boxes) == int((~is_gt).sum()) + len(gt)
            assert torch.equal(boxes[-len(gt) :], gt)
    # Detectron2: the refined GT proposals instead, no exact GT box
    _, later, gts = stage_proposals(model, "first")
    for stage_boxes in later:
        for boxes, gt in zip(stage_boxes, gts, strict=True):
            assert not (boxes[:, None, :] == gt[None]).all(-1).any()
