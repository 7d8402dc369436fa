"""Anchor assigners of the dense RS detectors on hand-built cases (FCOS's also against Detectron2's
FCOS), the PAA GMM split, score voting.

Expected positives are worked out by hand in the comments (IoUs as fractions, thresholds to 4-6
digits); the margins to every threshold are far above float32 noise.
"""

import math

import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, Instances

from rs_detectron2.modeling import (
    ATSSAssigner,
    FCOSAssigner,
    IoUAssigner,
    PAAAssigner,
    score_voting,
)
from rs_detectron2.modeling.assigners import fit_gmm_1d, paa_anchor_scores, paa_split


def gt(boxes, classes=None, size=(400, 400)):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    n = len(inst.gt_boxes)
    inst.gt_classes = torch.tensor(classes if classes is not None else [0] * n, dtype=torch.long)
    return inst


def boxes(rows):
    return Boxes(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4))


def dets(box_rows, classes, scores=None):
    """Detections / candidates as score_voting takes them."""
    inst = Instances((2000, 2000))
    inst.pred_boxes = Boxes(torch.as_tensor(box_rows, dtype=torch.float32).reshape(-1, 4))
    inst.pred_classes = torch.as_tensor(classes)
    if scores is not None:
        inst.scores = torch.as_tensor(scores)
    return inst


def positives(labels):
    return torch.nonzero(labels == 1).squeeze(1).tolist()


# --------------------------------------------------------------------------------------------
# IoU assignment (RS-RetinaNet)
# --------------------------------------------------------------------------------------------


def test_iou_assigner_thresholds_ignore_band_and_low_quality():
    # GT0 = [0, 0, 10, 10] (area 100), GT1 = [100, 100, 120, 120] (area 400).
    anchors = boxes(
        [
            [0, 0, 10, 10],  # a0: IoU(GT0) = 1                        -> positive, GT0
            [0, 0, 10, 14],  # a1: 100 / 140 = 0.714 >= 0.5              -> positive, GT0
            [0, 0, 10, 22],  # a2: 100 / 220 = 0.455 in [0.4, 0.5)       -> ignored
            [5, 0, 15, 10],  # a3: 50 / 150 = 0.333 < 0.4                -> negative
            [20, 20, 30, 30],  # a4: 0                                     -> negative
            [100, 100, 110, 110],  # a5: IoU(GT1) = 100 / 400 = 0.25 < 0.4, but it is GT1's
            # best anchor: a low-quality match                              -> positive, GT1
        ]
    )
    matched, labels = IoUAssigner()(anchors, [6], gt([[0, 0, 10, 10], [100, 100, 120, 120]]))
    assert labels.tolist() == [1, 1, -1, 0, 0, 1]
    assert matched[[0, 1, 5]].tolist() == [0, 0, 1]
    # without low-quality matches a5 is a negative
    _, labels = IoUAssigner(allow_low_quality_matches=False)(
        anchors, [6], gt([[0, 0, 10, 10], [100, 100, 120, 120]])
    )
    assert labels.tolist() == [1, 1, -1, 0, 0, 0]


def test_assigners_share_input_checks_and_the_empty_image():
    anchors = boxes([[0, 0, 10, 10], [5, 5, 20, 20]])
    logits, pred = torch.zeros(2, 3), anchors.tensor
    for assigner in (IoUAssigner(), ATSSAssigner(), PAAAssigner(), FCOSAssigner()):
        matched, labels = assigner(anchors, [2], gt([]), pred_logits=logits, pred_boxes=pred)
        assert matched.dtype == torch.int64 and labels.dtype == torch.int8
        assert labels.tolist() == [0, 0] and matched.tolist() == [0, 0]
        with pytest.raises(ValueError):  # per-level counts must add up to the anchors
            assigner(anchors, [1], gt([[0, 0, 10, 10]]), pred_logits=logits, pred_boxes=pred)
    with pytest.raises(ValueError):  # PAA needs the predictions
        PAAAssigner()(anchors, [2], gt([[0, 0, 10, 10]]))
    # like Matcher, an IoUAssigner labels every anchor of an empty image with its lowest label
    _, labels = IoUAssigner(labels=(-1, -1, 1))(anchors, [2], gt([]))
    assert labels.tolist() == [-1, -1]


# --------------------------------------------------------------------------------------------
# ATSS
# --------------------------------------------------------------------------------------------

# One GT G = [0, 0, 20, 20] (area 400, centre (10, 10)). Two levels.
ATSS_LEVEL0 = [
    [9, 9, 11, 11],  # c0: centre (10, 10), distance 0;   inside G: IoU = 4 / 400 = 0.01
    [10, 9, 12, 11],  # c1: centre (11, 10), distance 1;   IoU = 0.01
    [1.5, 0, 21.5, 20],  # c2: centre (11.5, 10), distance 1.5; IoU = 370 / 430 = 0.86047
]
ATSS_LEVEL1 = [
    [-10, -10, 30, 30],  # d0: centre (10, 10), distance 0;  IoU = 400 / 1600 = 0.25
    [40, 40, 80, 80],  # d1: centre (60, 60), distance 70.7; IoU = 0
]


def test_atss_threshold_is_mean_plus_std_of_per_level_nearest_candidates():
    anchors = boxes(ATSS_LEVEL0 + ATSS_LEVEL1)
    # topk = 2: level 0 candidates c0, c1 (distances 0, 1; c2 at 1.5 is not among the 2 nearest,
    # although it has the highest IoU); level 1 candidates d0, d1.
    # IoUs 0.01, 0.01, 0.25, 0: mean 0.0675, unbiased std sqrt(0.044475 / 3) = 0.12176,
    # threshold 0.18926 -> only d0 (0.25, centre inside) is positive.
    matched, labels = ATSSAssigner(topk=2)(anchors, [3, 2], gt([[0, 0, 20, 20]]))
    assert positives(labels) == [3]
    assert set(labels.tolist()) <= {0, 1}  # ATSS ignores nothing
    # topk = 3: level 0 candidates c0, c1, c2; level 1 has only 2 anchors: d0, d1.
    # IoUs 0.01, 0.01, 0.86047, 0.25, 0: mean 0.22609, std sqrt(0.547516 / 4) = 0.36997,
    # threshold 0.59607 -> only c2 is positive now (d0's 0.25 is below).
    matched, labels = ATSSAssigner(topk=3)(anchors, [3, 2], gt([[0, 0, 20, 20]]))
    assert positives(labels) == [2]
    assert matched[2] == 0


def test_atss_std_is_unbiased_as_in_mmdet():
    # G = [0, 0, 20, 20]; one level, topk 6 = all anchors. Horizontal shifts s of a 20 x 20 box
    # have IoU (20 - s) / (20 + s): s = 4 -> 2/3, s = 7 -> 13/27 = 0.48148; four far anchors 0.
    anchors = boxes(
        [[4, 0, 24, 20], [7, 0, 27, 20]] + [[300 + 30 * i, 0, 320 + 30 * i, 20] for i in range(4)]
    )
    # mean 1.14815 / 6 = 0.19136; squared deviations sum to 0.456564.
    # torch.std (n - 1): std 0.30218, threshold 0.49354 -> only s = 4 is positive.
    # (A biased std, 0.27585, would give 0.46721 and make s = 7 positive too.)
    _, labels = ATSSAssigner(topk=6)(anchors, [6], gt([[0, 0, 20, 20]]))
    assert labels.tolist() == [1, 0, 0, 0, 0, 0]


def test_atss_centre_must_be_inside_the_box():
    # One level of 7 anchors, topk 7 (all are candidates): A = [10, 0, 50, 20] (area 800, centre
    # (30, 10)) and six far anchors with IoU 0, which pull the threshold down.
    zeros = [[300 + 20 * i, 300, 310 + 20 * i, 310] for i in range(6)]
    anchors = boxes([[10, 0, 50, 20]] + zeros)
    # G = [0, 0, 31, 20] (area 620): IoU(A) = 21 * 20 / (620 + 800 - 420) = 0.42; mean 0.06,
    # std sqrt((0.36^2 + 6 * 0.06^2) / 6) = 0.15875, threshold 0.21875 -> A passes, and its
    # centre is 1 px inside G -> positive.
    _, labels = ATSSAssigner(topk=7)(anchors, [7], gt([[0, 0, 31, 20]]))
    assert labels.tolist() == [1, 0, 0, 0, 0, 0, 0]
    # G = [0, 0, 29, 20] (area 580): IoU(A) = 19 * 20 / (580 + 800 - 380) = 0.38; mean 0.05429,
    # std 0.14363, threshold 0.19792 -> A passes the IoU test again, but its centre x = 30 is
    # 1 px outside G -> no positive at all.
    _, labels = ATSSAssigner(topk=7)(anchors, [7], gt([[0, 0, 29, 20]]))
    assert labels.tolist() == [0] * 7
    # The margin is strict: a centre exactly on the border (G = [0, 0, 30, 20]) is outside.
    _, labels = ATSSAssigner(topk=7)(anchors, [7], gt([[0, 0, 30, 20]]))
    assert labels.tolist() == [0] * 7


def test_atss_anchor_positive_for_two_gts_goes_to_the_higher_iou():
    # GT0 = [0, 0, 20, 20], GT1 = [4, 0, 24, 20]; one level, topk 10 = all anchors.
    anchors = boxes(
        [
            [3, 0, 23, 20],  # a0: IoU(GT0) = 17 / 23 = 0.73913, IoU(GT1) = 19 / 21 = 0.90476
            [0, 0, 20, 20],  # a1: IoU(GT0) = 1,                IoU(GT1) = 16 / 24 = 0.66667
        ]
        + [[100 + 30 * i, 0, 120 + 30 * i, 20] for i in range(8)]  # IoU 0 with both
    )
    # GT0: IoUs 1, 0.73913 and eight 0: mean 0.17391, std sqrt(1.243857 / 9) = 0.37176,
    #      threshold 0.54567 -> a0 and a1 are positive candidates of GT0.
    # GT1: IoUs 0.90476, 0.66667, eight 0: mean 0.15714, std sqrt(1.016100 / 9) = 0.33601,
    #      threshold 0.49315 -> a0 and a1 are positive candidates of GT1 too.
    # Both centres (13, 10) and (10, 10) lie inside both boxes. Conflicts go to the higher IoU:
    # a0 -> GT1 (0.905 > 0.739), a1 -> GT0 (1 > 0.667).
    matched, labels = ATSSAssigner(topk=10)(anchors, [10], gt([[0, 0, 20, 20], [4, 0, 24, 20]]))
    assert positives(labels) == [0, 1]
    assert matched[:2].tolist() == [1, 0]


def test_atss_empty_ground_truth_and_small_levels():
    anchors = boxes(ATSS_LEVEL0 + ATSS_LEVEL1)
    matched, labels = ATSSAssigner(topk=9)(anchors, [3, 2], gt([]))
    assert labels.tolist() == [0] * 5 and matched.tolist() == [0] * 5
    # topk larger than every level: all 5 anchors are candidates, nothing crashes
    _, labels = ATSSAssigner(topk=9)(anchors, [3, 2], gt([[0, 0, 20, 20]]))
    assert positives(labels) == [2]  # as with topk 3 above (same 5 candidates)


# --------------------------------------------------------------------------------------------
# FCOS (RS-FCOS): against Detectron2's FCOS.label_anchors on the same points
# --------------------------------------------------------------------------------------------

FCOS_STRIDES = (8, 16, 32)  # sizes (0, 64), (64, 128), (128, inf); a 256 x 256 image
FCOS_SIZE = 256


def fcos_points(strides=FCOS_STRIDES, size=FCOS_SIZE):
    """Per-level Boxes of FCOS's points: one stride-sized square anchor centred on (i + 0.5) s."""
    gen = DefaultAnchorGenerator(sizes=[[s] for s in strides], aspect_ratios=[1.0], strides=strides)
    return gen([torch.zeros(1, 1, -(-size // s), -(-size // s)) for s in strides])


def point_index(x, y, level, strides=FCOS_STRIDES, size=FCOS_SIZE):
    """Index among all points of the level-``level`` point centred on (x, y)."""
    widths = [-(-size // s) for s in strides]
    s = strides[level]
    return sum(w * w for w in widths[:level]) + int(y // s) * widths[level] + int(x // s)


def detectron2_fcos(radius, strides=FCOS_STRIDES, num_classes=100):
    """Detectron2's FCOS over stand-in levels: only its label_anchors is used."""
    from detectron2.modeling.backbone import Backbone
    from detectron2.modeling.meta_arch.fcos import FCOS

    class Levels(Backbone):
        def forward(self, x):
            return {}

        def output_shape(self):
            return {f"p{k}": ShapeSpec(channels=1, stride=s) for k, s in enumerate(strides)}

    return FCOS(
        backbone=Levels(),
        head=torch.nn.Identity(),
        num_classes=num_classes,
        center_sampling_radius=radius,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )


def fcos_assign_like_detectron2(gt_rows, radius=1.5):
    """FCOSAssigner's labels of the points, checked against Detectron2's FCOS on the same points
    and boxes (each box's class is its index, so Detectron2's label is the matched box)."""
    anchors = fcos_points()
    inst = gt(gt_rows, classes=list(range(len(gt_rows))), size=(FCOS_SIZE, FCOS_SIZE))
    labels_d2, boxes_d2 = detectron2_fcos(radius).label_anchors(anchors, [inst])
    matched, labels = FCOSAssigner(center_sampling_radius=radius)(
        Boxes.cat(anchors), [len(a) for a in anchors], inst
    )
    positive = labels_d2[0] != 100
    assert torch.equal(labels == 1, positive)
    assert torch.equal(matched[positive], labels_d2[0][positive])
    assert set(labels.tolist()) <= {0, 1}  # FCOS ignores nothing
    assert (matched[~positive] == 0).all()
    return matched, labels


def test_fcos_overlapping_boxes_go_to_the_smallest():
    rows = [
        [20, 20, 200, 200],  # area 32400
        [60, 60, 100, 100],  # area 1600, centre (80, 80)
        [40, 40, 140, 120],  # area 8000
        [50, 50, 110, 110],  # area 3600, centre (80, 80)
    ]
    matched, labels = fcos_assign_like_detectron2(rows)
    # the level-0 point (76, 76) is 4 px from both centres (1.5 x 8 = 12 allowed), inside both,
    # its largest side distance 24 (box 1) and 34 (box 3) < 64: a candidate of both -> box 1
    p = point_index(76, 76, 0)
    assert labels[p] == 1 and matched[p] == 1
    # box 3 shares box 1's centre: every point near it is also box 1's, which is smaller, and its
    # level-1 points would need to reach beyond 64 px: box 3 gets no point at all
    assert set(matched[labels == 1].tolist()) == {0, 1, 2}


def test_fcos_size_bounds_are_strict_between_levels():
    # centre (100, 100), half-side 64: the level-0 point (100, 100) reaches every side at exactly
    # 64 = 8 x 8 = 4 x 16, on neither level (both bounds strict); the level-0 points near it reach
    # 72; the level-1 points (88 or 104, 88 or 104) reach 68 or 76 in (64, 128)
    matched, labels = fcos_assign_like_detectron2([[36, 36, 164, 164]])
    level0 = len(fcos_points()[0])
    assert labels[point_index(100, 100, 0)] == 0
    assert not labels[:level0].any()
    for x in (88, 104):
        for y in (88, 104):
            assert labels[point_index(x, y, 1)] == 1


def test_fcos_boxes_too_small_or_too_large_for_a_level():
    # small: the level-0 point (100, 100) reaches 3 < 64; large: the whole image, whose points
    # reach >= 128 beyond level 1's range: only level 2 (no upper bound) takes it
    matched, labels = fcos_assign_like_detectron2([[98, 98, 103, 103], [0, 0, 256, 256]])
    counts = [len(a) for a in fcos_points()]
    pos = torch.nonzero(labels == 1).squeeze(1)
    small, large = pos[matched[pos] == 0], pos[matched[pos] == 1]
    assert small.tolist() == [point_index(100, 100, 0)]
    assert len(large) > 0 and (large >= counts[0] + counts[1]).all()


def test_fcos_centre_sampling_at_the_image_border():
    # a box in the corner, centre (10, 20): the sampling square (-2, 22) x (8, 32) reaches past the
    # image and the box; what is left are the level-0 points strictly inside the box
    matched, labels = fcos_assign_like_detectron2([[0, 0, 20, 40]])
    expected = sorted(point_index(x, y, 0) for x in (4, 12) for y in (12, 20, 28))
    assert torch.nonzero(labels == 1).squeeze(1).tolist() == expected
    # radius inf: no centre sampling, every level-0 point strictly inside the box
    _, labels = fcos_assign_like_detectron2([[0, 0, 20, 40]], radius=math.inf)
    assert int(labels.sum()) == 2 * 5


def test_fcos_box_without_a_point_inside_gives_no_positives():
    # no level-0 point (4, 12, ...) lies strictly inside; the level-1 point (8, 8) does, but
    # reaches only 3 < 64
    matched, labels = fcos_assign_like_detectron2([[5, 5, 11, 11]])
    assert not labels.any() and not matched.any()


@pytest.mark.parametrize("seed", range(12))
def test_fcos_random_boxes_match_detectron2(seed):
    """Random boxes on whole and half pixels (so some distances fall exactly on the bounds), areas
    apart by more than Detectron2's float32 resolution of ``1e8 - area``."""
    g = torch.Generator().manual_seed(seed)
    while True:
        corners = (
            torch.randint(
                0, 2 * FCOS_SIZE + 1, (int(torch.randint(1, 8, (1,), generator=g)), 4), generator=g
            )
            / 2
        )
        rows = torch.cat(
            [corners[:, :2].minimum(corners[:, 2:]), corners[:, :2].maximum(corners[:, 2:])], 1
        )
        areas = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
        gaps = (areas[:, None] - areas[None, :]).abs() + torch.eye(len(areas)) * 1e9
        if (areas > 0).all() and (gaps > 16).all():
            break
    fcos_assign_like_detectron2(rows.tolist())
    fcos_assign_like_detectron2(rows.tolist(), radius=math.inf)


def test_fcos_near_equal_areas_are_compared_exactly():
    # both boxes hold the point (100, 100); areas 500 and 497.5, which Detectron2's float32
    # 1e8 - area cannot tell apart (it would take box 0): the smaller wins here
    inst = gt([[88, 88, 108, 113], [88, 88, 107.9, 113]])
    anchors = fcos_points()
    matched, labels = FCOSAssigner()(Boxes.cat(anchors), [len(a) for a in anchors], inst)
    p = point_index(100, 100, 0)
    assert labels[p] == 1 and matched[p] == 1
    # equal areas: the lower index
    inst = gt([[88, 88, 108, 113], [88, 88, 108, 113]])
    matched, labels = FCOSAssigner()(Boxes.cat(anchors), [len(a) for a in anchors], inst)
    assert labels[p] == 1 and matched[p] == 0


def test_fcos_assigner_reads_strides_from_the_anchor_widths():
    # the same boxes on a 2-level layout with a custom range: the per-level bounds follow the
    # anchors' widths, the first level has no lower bound and the last no upper bound
    anchors = fcos_points(strides=(16, 64), size=256)
    counts = [len(a) for a in anchors]
    inst = gt([[100, 100, 110, 110], [0, 0, 256, 256]])
    matched, labels = FCOSAssigner(size_range=(1.0, 2.0))(Boxes.cat(anchors), counts, inst)
    pos = torch.nonzero(labels == 1).squeeze(1)
    # the small box on level 0 only (reach < 32), the large one on level 1 only (reach > 32)
    assert set(matched[pos[pos < counts[0]]].tolist()) == {0}
    assert set(matched[pos[pos >= counts[0]]].tolist()) == {1}


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(center_sampling_radius=0),
        dict(center_sampling_radius=-1.5),
        dict(center_sampling_radius=float("nan")),
        dict(size_range=(8.0, 4.0)),
        dict(size_range=(4.0, 4.0)),
        dict(size_range=(-1.0, 8.0)),
        dict(size_range=(4.0,)),
        dict(size_range=(float("nan"), 8.0)),
    ],
)
def test_fcos_assigner_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FCOSAssigner(**kwargs)


# --------------------------------------------------------------------------------------------
# PAA: the GMM and its split
# --------------------------------------------------------------------------------------------


def test_gmm_separates_two_clusters():
    # Two clusters: {0.1, ..., 0.5} (mean 0.3, biased variance 0.02) and {2.0, ..., 2.3}
    # (mean 2.15, variance 0.0125). EM from means (min, max) converges to them (responsibilities
    # ~0 / 1), weights 5/9 and 4/9; variances include reg_covar 1e-5.
    x = torch.tensor([0.4, 2.1, 0.1, 2.3, 0.3, 0.5, 2.0, 0.2, 2.2])
    gmm = fit_gmm_1d(x)
    torch.testing.assert_close(gmm.means[0], torch.tensor([0.3, 2.15], dtype=torch.float64))
    torch.testing.assert_close(
        gmm.variances[0], torch.tensor([0.02001, 0.01251], dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(gmm.weights[0], torch.tensor([5 / 9, 4 / 9], dtype=torch.float64))
    assert gmm.assignment[0].tolist() == [0, 1, 0, 1, 0, 0, 1, 0, 1]
    # The positives are the component-0 samples up to its highest-density sample. The density of
    # the mixture near the low cluster is that of N(0.3, 0.02) (the other component is > 10 std
    # away), maximal at the sample closest to 0.3: 0.3 itself. So 0.1, 0.2, 0.3 are positives;
    # 0.4 and 0.5 (low cluster, above its peak) and the high cluster are negatives.
    assert paa_split(x).tolist() == [False, False, True, False, True, False, False, True, False]


def test_gmm_follows_scikit_learn_stopping_rule():
    # Reference values from scikit-learn 1.9.1, GaussianMixture(2, covariance_type="diag",
    # weights_init=[.5, .5], means_init=[min, max], precisions_init=[1, 1], reg_covar=1e-5) as
    # mmdet calls it: the mean log-likelihood changes by < 1e-3 after 3 iterations, long before
    # the two clusters are separated, so every sample of the low half is a positive.
    x = torch.tensor([0.0952, 0.1818, 0.2609, 1.0, 1.111, 1.2], dtype=torch.float64)
    gmm = fit_gmm_1d(x)
    assert int(gmm.num_iters[0]) == 3
    torch.testing.assert_close(
        gmm.means[0], torch.tensor([0.5134141337789655, 0.7703108985054326], dtype=torch.float64)
    )
    torch.testing.assert_close(
        gmm.variances[0],
        torch.tensor([0.20200815915917258, 0.2035182417823515], dtype=torch.float64),
    )
    assert paa_split(x).tolist() == [True, True, True, False, False, False]


def test_paa_split_batched_rows_match_single_rows_and_tiny_rows_get_nothing():
    rows = [
        [0.4, 2.1, 0.1, 2.3, 0.3, 0.5, 2.0, 0.2, 2.2],
        [0.7, 0.1, 0.3, 1.9, 0.0, 0.0, 0.0, 0.0, 0.0],  # 4 valid entries
        [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # 1 valid entry: no GMM, no positives
    ]
    valid = torch.zeros(3, 9, dtype=torch.bool)
    valid[0] = True
    valid[1, :4] = True
    valid[2, :1] = True
    x = torch.tensor(rows)
    batched = paa_split(x, valid)
    for i in range(2):
        single = paa_split(x[i][valid[i]])
        assert batched[i][valid[i]].tolist() == single.tolist()
        assert not batched[i][~valid[i]].any()
    assert not batched[2].any()
    # rows with 0 or 1 sample are not fitted
    assert fit_gmm_1d(torch.tensor([[1.0, 2.0]]), torch.tensor([[True, False]])).num_iters[0] == 0


def giou_loss_of_shift(s, w=100.0):
    """GIoU loss of a w x w box and its copy shifted horizontally by s (by hand): for s <= w the
    enclosing box equals the union, GIoU = IoU = (w - s) / (w + s), loss 2 s / (w + s); for s > w,
    IoU 0 and GIoU = -(s - w) / (s + w), loss 1 + (s - w) / (s + w)."""
    return 2 * s / (w + s) if s <= w else 1 + (s - w) / (s + w)


def paa_inputs(shifts_per_level, num_classes=3, gt_class=1):
    """One GT [0, 0, 100, 100]; every anchor is a copy of it (IoU 1: all are candidates), and its
    predicted box is the GT shifted right by the given amount. The classifier is confident and
    right (GT-class logit +12, others -12), so the focal part of the PAA score is ~1e-16 and the
    score of an anchor is the GIoU loss of its shift. A last anchor far away (IoU 0: never a
    candidate) predicts the GT box exactly (score 0)."""
    shifts = [s for level in shifts_per_level for s in level]
    n = len(shifts)
    anchor_rows = [[0, 0, 100, 100]] * n + [[300, 300, 340, 340]]
    pred = [[s, 0, 100 + s, 100] for s in shifts] + [[0, 0, 100, 100]]
    logits = torch.full((n + 1, num_classes), -12.0)
    logits[:, gt_class] = 12.0
    counts = [len(level) for level in shifts_per_level]
    counts[-1] += 1
    return (
        boxes(anchor_rows),
        counts,
        gt([[0, 0, 100, 100]], [gt_class]),
        logits,
        torch.tensor(pred, dtype=torch.float32),
    )


def test_paa_anchor_scores_are_focal_plus_giou():
    anchors, counts, inst, logits, pred = paa_inputs([[5, 10, 300]])
    scores = paa_anchor_scores(
        logits[:3], pred[:3], torch.tensor([1, 1, 1]), inst.gt_boxes.tensor[[0, 0, 0]]
    )
    expected = torch.tensor([giou_loss_of_shift(s) for s in (5, 10, 300)])
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    # a wrong, confident classifier adds the focal loss of the GT class: 0.25 * softplus(12) ~ 3
    wrong = torch.full((1, 3), -12.0)
    score = paa_anchor_scores(wrong, pred[:1], torch.tensor([1]), inst.gt_boxes.tensor[:1])
    assert float(score) == pytest.approx(
        0.25 * (12 + math.log1p(math.exp(-12))) + float(expected[0]), abs=1e-4
    )


def test_paa_assigner_positives_are_the_low_loss_mode():
    # Scores (GIoU losses of the shifts): 5 -> 0.09524, 10 -> 0.18182, 15 -> 0.26087;
    # 300 -> 1.5, 500 -> 1.6667, 700 -> 1.75, 900 -> 1.8. The GMM separates the two groups
    # (low component mean 0.1793); the low component's density peaks at its sample nearest
    # 0.1793, i.e. 0.18182 (shift 10). Positives: shifts 5 and 10. Everything else, including the
    # far anchor whose prediction is perfect (it is no candidate), is negative.
    inputs = paa_inputs([[15, 300, 5, 500], [700, 10, 900]])
    matched, labels = PAAAssigner()(*inputs[:3], pred_logits=inputs[3], pred_boxes=inputs[4])
    assert positives(labels) == [2, 5]
    assert set(labels.tolist()) == {0, 1}
    assert matched[[2, 5]].tolist() == [0, 0]


def test_paa_assigner_keeps_topk_lowest_scores_per_level():
    # topk 3. Level 0: shifts 5, 10, 15, 20 -> the 3 lowest scores 5, 10, 15 are kept; 20 (score
    # 0.3333, lower than any level-1 score) is dropped and becomes a negative. Level 1: shifts
    # 300, 500, 700, 900 -> 300, 500, 700 kept. GMM on {0.0952, 0.1818, 0.2609, 1.5, 1.6667,
    # 1.75}: low component mean 0.1793, peak at 0.1818 -> positives: shifts 5 and 10.
    inputs = paa_inputs([[20, 5, 10, 15], [900, 300, 500, 700]])
    _, labels = PAAAssigner(topk=3)(*inputs[:3], pred_logits=inputs[3], pred_boxes=inputs[4])
    assert positives(labels) == [1, 2]


def test_paa_assigner_multiple_gts_single_candidate_and_empty():
    # Two far-apart GTs, each with its own candidates (copies of its box).
    a = paa_inputs([[15, 300, 5, 500, 700, 10, 900]])
    b_anchors = boxes([[1000, 1000, 1100, 1100]] * 7)
    b_pred = torch.tensor(
        [[1000 + s, 1000, 1100 + s, 1100] for s in (900, 700, 5, 10, 500, 300, 15)]
    )
    anchors = Boxes.cat([a[0], b_anchors])
    inst = gt([[0, 0, 100, 100], [1000, 1000, 1100, 1100]], [1, 2], size=(1200, 1200))
    logits = torch.full((15, 3), -12.0)
    logits[:8, 1] = 12.0
    logits[8:, 2] = 12.0
    pred = torch.cat([a[4], b_pred])
    matched, labels = PAAAssigner()(anchors, [15], inst, pred_logits=logits, pred_boxes=pred)
    # same scores as above per GT: GT0's positives are shifts 5 (index 2) and 10 (index 5);
    # GT1's are shifts 5 (index 8 + 2) and 10 (index 8 + 3).
    assert positives(labels) == [2, 5, 10, 11]
    assert matched[[2, 5, 10, 11]].tolist() == [0, 0, 1, 1]

    # A GT with a single candidate: mmdet skips the GMM (it needs 2 samples), so the candidate
    # becomes a negative and the GT has no positive anchor.
    anchors = boxes([[0, 0, 100, 100], [500, 500, 540, 540], [600, 600, 640, 640]])
    logits = torch.full((3, 3), -12.0)
    logits[:, 1] = 12.0
    _, labels = PAAAssigner()(
        anchors, [3], gt([[0, 0, 100, 100]], [1]), pred_logits=logits, pred_boxes=anchors.tensor
    )
    assert labels.tolist() == [0, 0, 0]

    matched, labels = PAAAssigner()(
        anchors, [3], gt([]), pred_logits=logits, pred_boxes=anchors.tensor
    )
    assert labels.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------------------------
# Score voting (PAA test time)
# --------------------------------------------------------------------------------------------


def test_score_voting_weighted_mean_of_same_class_overlaps():
    det = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    det_classes = torch.tensor([0, 1])
    cand = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # det 0 itself: IoU 1, weight exp(0) * 0.9 = 0.9
            [1.0, 0.0, 11.0, 10.0],  # IoU 90 / 110 = 0.81818, weight exp(-0.18182^2 / 0.025) * 0.5
            [0.0, 0.0, 10.0, 12.0],  # class 1: not voted into det 0
            [9.95, 0.0, 19.95, 10.0],  # IoU 0.5 / 199.5 = 0.0025 <= 0.01: excluded
            [50.0, 50.0, 60.0, 60.0],  # det 1 itself (class 1)
            [50.0, 50.0, 60.0, 62.0],  # class 1, IoU 100 / 120 = 0.83333
        ]
    )
    scores = torch.tensor([0.9, 0.5, 0.8, 0.7, 0.6, 0.3])
    classes = torch.tensor([0, 0, 1, 0, 1, 1])
    voted = score_voting(dets(det, det_classes), dets(cand, classes, scores))

    w1 = math.exp(-((1 - 90 / 110) ** 2) / 0.025) * 0.5  # 0.13327
    x1 = (0.9 * 0 + w1 * 1) / (0.9 + w1)
    x2 = (0.9 * 10 + w1 * 11) / (0.9 + w1)
    torch.testing.assert_close(voted[0], torch.tensor([x1, 0.0, x2, 10.0]))
    w2 = math.exp(-((1 - 100 / 120) ** 2) / 0.025) * 0.3
    y2 = (0.6 * 60 + w2 * 62) / (0.6 + w2)
    torch.testing.assert_close(voted[1], torch.tensor([50.0, 50.0, 60.0, y2]))
    # no detections / no candidates
    assert score_voting(dets(det[:0], det_classes[:0]), dets(cand, classes, scores)).shape == (0, 4)
    torch.testing.assert_close(
        score_voting(dets(det, det_classes), dets(cand[:0], classes[:0], scores[:0])), det
    )


def test_score_voting_is_float32_under_autocast():
    # 400 same-class candidates around a box at x ~ 1000: a bfloat16 (or float16) weighted sum of
    # the coordinates would be off by whole pixels (bfloat16 steps are 8 px at 1000).
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([[1000.0, 900.0, 1300.0, 1150.0]])
    cand = base + torch.randn(400, 4, generator=g) * 3
    scores = torch.rand(400, generator=g)
    classes = torch.zeros(400, dtype=torch.long)
    det, cands = dets(base, classes[:1]), dets(cand, classes, scores)
    expected = score_voting(det, cands)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        voted = score_voting(det, cands)
    assert voted.dtype == torch.float32
    torch.testing.assert_close(voted, expected, atol=1e-3, rtol=0)
