"""oLRP (TPAMI 2022 definition, tau = 0.5) on hand-built cases whose numbers are derived by hand.

LRP(s) = (sum_TP (1 - IoU) / (1 - tau) + N_FP + N_FN) / (N_TP + N_FP + N_FN), oLRP = min_s LRP(s);
with tau = 0.5 a TP of IoU 0.8 contributes 0.2 / 0.5 = 0.4 and one of IoU 0.6 contributes 0.8.
"""

import contextlib
import io
import json
import math
import uuid

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from rs_detectron2.evaluation import OLRPEvaluator, olrp_from_coco, optimal_lrp

NAN = float("nan")


def _coco(images, annotations, categories):
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _images(n, size=100):
    return [
        {"id": i, "width": size, "height": size, "file_name": f"{i}.jpg"} for i in range(1, n + 1)
    ]


def _cats(*ids):
    return [{"id": c, "name": f"c{c}"} for c in ids]


def _gt_box(ann_id, img, cat, xywh, iscrowd=0):
    x, y, w, h = xywh
    return {
        "id": ann_id,
        "image_id": img,
        "category_id": cat,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": iscrowd,
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def _det(img, cat, xywh, score):
    return {"image_id": img, "category_id": cat, "bbox": list(xywh), "score": score}


def _close(a, b, tol=1e-9):
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return abs(a - b) <= tol


def _check(rec, **expected):
    for key, value in expected.items():
        assert _close(rec[key], value), (key, rec[key], value)


# (a) One class, 2 GT in one image: GT1 = [0,0,10,10], GT2 = [20,0,10,10].
#   d1 (0.9) [0,0,10,8]   -> TP on GT1, IoU 80/100 = 0.8
#   d2 (0.8), d3 (0.7)    -> FPs far away
#   d4 (0.6) [20,0,10,6]  -> TP on GT2, IoU 60/100 = 0.6
# s=0.9: TP 1 (0.4), FP 0, FN 1 -> (0.4 + 0 + 1) / 2 = 0.70   <- optimum, not the lowest threshold
# s=0.8: TP 1, FP 1, FN 1      -> (0.4 + 1 + 1) / 3 = 0.80
# s=0.7: TP 1, FP 2, FN 1      -> (0.4 + 2 + 1) / 4 = 0.85
# s=0.6: TP 2, FP 2, FN 0      -> (0.4 + 0.8 + 2 + 0) / 4 = 0.80
# Components at s=0.9: Loc = 1 - 0.8 = 0.2, FP = 0 / 1 = 0, FN = 1 / 2 = 0.5.
CASE_A_GT = [_gt_box(1, 1, 1, (0, 0, 10, 10)), _gt_box(2, 1, 1, (20, 0, 10, 10))]
CASE_A_DT = [
    _det(1, 1, (0, 0, 10, 8), 0.9),
    _det(1, 1, (50, 50, 10, 10), 0.8),
    _det(1, 1, (70, 70, 10, 10), 0.7),
    _det(1, 1, (20, 0, 10, 6), 0.6),
]


def test_a_optimal_threshold_not_lowest():
    gt = _coco(_images(1), CASE_A_GT, _cats(1))
    res = olrp_from_coco(gt, CASE_A_DT, "bbox")
    _check(res, oLRP=0.7, oLRP_Loc=0.2, oLRP_FP=0.0, oLRP_FN=0.5)
    _check(res["per_class"][1], oLRP=0.7, threshold=0.9, num_tp=1, num_fp=0, num_fn=1, num_gt=2)


def test_a_on_the_authors_grid():
    # On the grid 0, 0.01, ..., 1 the thresholds 0.81..0.90 all keep exactly d1 (LRP 0.7); ties go
    # to the lowest threshold, 0.81. Above 0.9 nothing is kept (LRP 1).
    gt = _coco(_images(1), CASE_A_GT, _cats(1))
    res = olrp_from_coco(gt, CASE_A_DT, "bbox", score_thrs=np.linspace(0, 1, 101))
    _check(res["per_class"][1], oLRP=0.7, threshold=0.81)


def test_optimal_lrp_on_arrays():
    # Case (a) after matching, in shuffled order: scores, TP flags, IoUs of the TPs.
    rec = optimal_lrp(
        scores=[0.6, 0.9, 0.7, 0.8],
        is_tp=[True, True, False, False],
        ious=[0.6, 0.8, 0.0, 0.0],
        num_gt=2,
    )
    _check(rec, oLRP=0.7, oLRP_Loc=0.2, oLRP_FP=0.0, oLRP_FN=0.5, threshold=0.9)
    # Ties in score are kept or dropped together: with d1 and d2 both at 0.9 the candidates are
    # s=0.9: TP 1, FP 1, FN 1 -> (0.4 + 1 + 1) / 3 = 0.8 and s=0.6 as before (0.8): tie -> 0.6.
    rec = optimal_lrp([0.6, 0.9, 0.7, 0.9], [True, True, False, False], [0.6, 0.8, 0, 0], 2)
    _check(rec, oLRP=0.8, threshold=0.6, num_tp=2, num_fp=2)
    with pytest.raises(ValueError):
        optimal_lrp([0.5], [True], [0.9], num_gt=0)


def test_b_class_with_gt_but_no_detection():
    # Class 2 has one GT and no detection: LRP = (0 + 0 + 1) / 1 = 1 at every threshold.
    gt = _coco(_images(1), CASE_A_GT + [_gt_box(3, 1, 2, (60, 0, 10, 10))], _cats(1, 2))
    res = olrp_from_coco(gt, CASE_A_DT, "bbox")
    _check(res["per_class"][2], oLRP=1.0, oLRP_Loc=NAN, oLRP_FP=NAN, oLRP_FN=1.0, threshold=NAN)
    # No detection at all (empty result list): every class with GT has oLRP 1.
    res = olrp_from_coco(gt, [], "bbox")
    _check(res, oLRP=1.0, oLRP_Loc=NAN, oLRP_FP=NAN, oLRP_FN=1.0)


def test_c_perfect_detector():
    # Every GT detected with its own box (IoU 1): no loc error, no FP, no FN -> oLRP 0.
    gts = CASE_A_GT + [_gt_box(3, 2, 1, (5, 5, 30, 20)), _gt_box(4, 2, 2, (40, 40, 7, 9))]
    gt = _coco(_images(2), gts, _cats(1, 2))
    dets = [
        _det(g["image_id"], g["category_id"], g["bbox"], 0.5 + 0.1 * i) for i, g in enumerate(gts)
    ]
    res = olrp_from_coco(gt, dets, "bbox")
    _check(res, oLRP=0.0, oLRP_Loc=0.0, oLRP_FP=0.0, oLRP_FN=0.0)


# (d) Image 1: one GT, detected exactly (score 0.5). Image 2: no GT, one detection (score 0.9).
# Image 3: nothing at all.
# s=0.9: TP 0, FP 1, FN 1 -> (0 + 1 + 1) / 2 = 1.0
# s=0.5: TP 1 (IoU 1), FP 1, FN 0 -> (0 + 1 + 0) / 2 = 0.5  <- optimum; Loc 0, FP 1/2, FN 0
CASE_D_GT = [_gt_box(11, 1, 1, (10, 10, 20, 20))]
CASE_D_DT = [_det(1, 1, (10, 10, 20, 20), 0.5), _det(2, 1, (10, 10, 20, 20), 0.9)]


def test_d_fp_only_images():
    gt = _coco(_images(3), CASE_D_GT, _cats(1))
    res = olrp_from_coco(gt, CASE_D_DT, "bbox")
    _check(res["per_class"][1], oLRP=0.5, oLRP_Loc=0.0, oLRP_FP=0.5, oLRP_FN=0.0, threshold=0.5)
    # Evaluated on image 1 only the FP image is out: perfect.
    res = olrp_from_coco(gt, CASE_D_DT, "bbox", img_ids=[1])
    _check(res, oLRP=0.0)


def test_e_two_classes_averaged():
    # Class 1 = case (a) in image 1: oLRP 0.7, Loc 0.2, FP 0, FN 0.5.
    # Class 2 = case (d) in images 2 and 3: oLRP 0.5, Loc 0, FP 0.5, FN 0.
    # Class 3: one GT, no detection: oLRP 1, Loc and FP undefined, FN 1.
    # Class 4: detections but no GT: skipped.
    # oLRP = (0.7 + 0.5 + 1) / 3 = 0.7333..., FN = (0.5 + 0 + 1) / 3 = 0.5,
    # Loc = (0.2 + 0) / 2 = 0.1 and FP = (0 + 0.5) / 2 = 0.25 over the classes where defined.
    gts = CASE_A_GT + [
        _gt_box(11, 2, 2, (10, 10, 20, 20)),
        _gt_box(12, 1, 3, (60, 60, 10, 10)),
    ]
    dets = CASE_A_DT + [
        _det(2, 2, (10, 10, 20, 20), 0.5),
        _det(3, 2, (10, 10, 20, 20), 0.9),
        _det(1, 4, (0, 0, 10, 10), 0.99),
    ]
    gt = _coco(_images(3), gts, _cats(1, 2, 3, 4))
    res = olrp_from_coco(gt, dets, "bbox")
    assert sorted(res["per_class"]) == [1, 2, 3]
    _check(res, oLRP=2.2 / 3, oLRP_Loc=0.1, oLRP_FP=0.25, oLRP_FN=0.5)
    _check(res["per_class"][2], oLRP=0.5, threshold=0.5)
    assert res["per_class"][1]["name"] == "c1"


def test_f_crowd_not_counted():
    # GT A [0,0,10,10] and a crowd region C [50,50,40,40]; class 2 only has a crowd GT.
    # d1 (0.9) = A (TP, IoU 1); d2 (0.8) [55,55,10,10] and d3 (0.3) [60,60,20,20] lie inside C:
    # their crowd IoU (intersection / detection area) is 1, so both match C and are ignored:
    # neither FP nor TP, and C is never an FN. LRP = 0; ignored detections are no candidate
    # thresholds, so the optimal one is d1's 0.9. Counted as a normal GT, C would give d2 an IoU
    # of 100 / 1600 (an FP) and be an FN itself.
    gts = [
        _gt_box(1, 1, 1, (0, 0, 10, 10)),
        _gt_box(2, 1, 1, (50, 50, 40, 40), iscrowd=1),
        _gt_box(3, 1, 2, (0, 50, 40, 40), iscrowd=1),
        _gt_box(4, 1, 1, (0, 80, 15, 15), iscrowd=1),  # crowd without detection: no FN either
    ]
    dets = [
        _det(1, 1, (0, 0, 10, 10), 0.9),
        _det(1, 1, (55, 55, 10, 10), 0.8),
        _det(1, 1, (60, 60, 20, 20), 0.3),
        _det(1, 2, (5, 55, 10, 10), 0.7),
    ]
    gt = _coco(_images(1), gts, _cats(1, 2))
    res = olrp_from_coco(gt, dets, "bbox")
    assert list(res["per_class"]) == [1]  # class 2 has no countable GT
    _check(res["per_class"][1], oLRP=0.0, num_gt=1, num_fp=0, num_fn=0, threshold=0.9)


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def test_g_segm_square_masks():
    # 32x32 image. GT A: square rows/cols 0..9 (100 px); GT B: square rows/cols 20..29.
    # d1 (0.9): A with a 4x5 hole (80 px): mask IoU 80 / 100 = 0.8 (its box IoU would be 1).
    # d2 (0.4): square rows 0..9, cols 20..29, overlapping nothing: FP. B is missed.
    # s=0.9: (0.2 / 0.5 + 0 + 1) / 2 = 0.7; s=0.4: (0.4 + 1 + 1) / 3 = 0.8 -> oLRP 0.7 at 0.9,
    # Loc 0.2, FP 0, FN 0.5.
    a = np.zeros((32, 32), bool)
    a[0:10, 0:10] = True
    b = np.zeros((32, 32), bool)
    b[20:30, 20:30] = True
    d1 = a.copy()
    d1[2:6, 2:7] = False
    d2 = np.zeros((32, 32), bool)
    d2[0:10, 20:30] = True
    gts = []
    for i, m in enumerate((a, b), start=1):
        bbox = [float(v) for v in mask_utils.toBbox(_rle(m))]
        gts.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": 1,
                "segmentation": _rle(m),
                "area": float(m.sum()),
                "bbox": bbox,
                "iscrowd": 0,
            }
        )
    gt = _coco(_images(1, size=32), gts, _cats(1))
    dets = [
        {"image_id": 1, "category_id": 1, "segmentation": _rle(d1), "score": 0.9},
        {"image_id": 1, "category_id": 1, "segmentation": _rle(d2), "score": 0.4},
    ]
    res = olrp_from_coco(gt, dets, "segm")
    _check(res, oLRP=0.7, oLRP_Loc=0.2, oLRP_FP=0.0, oLRP_FN=0.5)
    _check(res["per_class"][1], threshold=0.9)


def _brute_force_olrp(gt, dets, cat_id, tau=0.5):
    """Oracle: for every score threshold, re-run COCO matching on the kept detections only and
    recompute each TP's IoU from its two boxes."""
    from pycocotools.cocoeval import COCOeval

    best = 1.0  # nothing kept: everything missed
    for s in sorted({d["score"] for d in dets if d["category_id"] == cat_id}):
        kept = [dict(d) for d in dets if d["score"] >= s]
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(kept)
            ev = COCOeval(gt, dt, "bbox")
            ev.params.iouThrs = np.array([tau])
            ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [100]
            ev.params.catIds = [cat_id]
            ev.evaluate()
        n_tp = n_fp = n_gt = 0
        loc = 0.0
        for e in ev.evalImgs:
            if e is None:
                continue
            n_gt += int(np.sum(np.asarray(e["gtIgnore"]) == 0))
            for dt_id, g, ign in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
                if ign:
                    continue
                if g > 0:
                    n_tp += 1
                    iou = mask_utils.iou([dt.anns[dt_id]["bbox"]], [gt.anns[int(g)]["bbox"]], [0])
                    loc += 1.0 - float(iou[0, 0])
                else:
                    n_fp += 1
        n_fn = n_gt - n_tp
        best = min(best, (loc / (1 - tau) + n_fp + n_fn) / (n_tp + n_fp + n_fn))
    return best


def test_random_against_brute_force():
    rng = np.random.RandomState(0)
    gts, dets = [], []
    for img in range(1, 7):
        for _ in range(rng.randint(2, 6)):
            cat = int(rng.randint(1, 3))
            x, y, w, h = rng.uniform(0, 60, 2).tolist() + rng.uniform(5, 30, 2).tolist()
            gts.append(
                _gt_box(len(gts) + 1, img, cat, (x, y, w, h), iscrowd=int(rng.rand() < 0.15))
            )
            for _ in range(rng.randint(0, 3)):  # duplicates and jittered boxes
                jit = np.array([x, y, w, h]) + rng.normal(0, 1.5, 4)
                dets.append(_det(img, cat, jit.tolist(), float(rng.rand())))
        for _ in range(rng.randint(0, 3)):  # background FPs
            box = rng.uniform(0, 60, 2).tolist() + rng.uniform(5, 30, 2).tolist()
            dets.append(_det(img, int(rng.randint(1, 3)), box, float(rng.rand())))
    gt = _coco(_images(6), gts, _cats(1, 2))
    res = olrp_from_coco(gt, dets, "bbox")
    assert sorted(res["per_class"]) == [1, 2]
    for cat_id, rec in res["per_class"].items():
        assert abs(rec["oLRP"] - _brute_force_olrp(gt, dets, cat_id)) < 1e-9
        assert 0.0 < rec["oLRP"] < 1.0  # a non-trivial case


def test_bad_iou_type():
    gt = _coco(_images(1), CASE_A_GT, _cats(1))
    with pytest.raises(ValueError):
        olrp_from_coco(gt, CASE_A_DT, "keypoints")


# ---------------------------------------------------------------- Detectron2 evaluator


@pytest.fixture
def tiny_dataset(tmp_path):
    """Case (e) minus classes 3/4 as a registered COCO json: class ids 3 ("cat") and 7 ("dog")."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    gts = [dict(g, category_id=3) for g in CASE_A_GT] + [dict(_gt_box(11, 2, 7, (10, 10, 20, 20)))]
    data = {
        "images": _images(3),
        "annotations": gts,
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    json_file = tmp_path / "tiny.json"
    json_file.write_text(json.dumps(data))
    name = f"olrp_tiny_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    DatasetCatalog.get(name)  # as a test loader would: sets thing_dataset_id_to_contiguous_id
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _instances(boxes_xywh, scores, classes, size=100):
    import torch

    from detectron2.structures import Boxes, Instances

    inst = Instances((size, size))
    xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes_xywh], dtype=torch.float32)
    inst.pred_boxes = Boxes(xyxy.reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    masks = torch.zeros((len(scores), size, size), dtype=torch.bool)
    for i, (x, y, w, h) in enumerate(boxes_xywh):
        masks[i, int(y) : int(y + h), int(x) : int(x + w)] = True
    inst.pred_masks = masks
    return inst


def test_olrp_evaluator(tiny_dataset, tmp_path):
    # "cat" (contiguous 0) = case (a): 70; "dog" (contiguous 1) = case (d): 50. Means:
    # oLRP 60, Loc (20 + 0) / 2 = 10, FP (0 + 50) / 2 = 25, FN (50 + 0) / 2 = 25, in percent.
    # Boxes have integer corners, so the rectangle masks have the same IoUs: segm == bbox.
    ev = OLRPEvaluator(tiny_dataset, tasks=("bbox", "segm"), output_dir=str(tmp_path / "out"))
    ev.reset()
    a = [d["bbox"] for d in CASE_A_DT]
    ev.process(
        [{"image_id": 1}, {"image_id": 2}],
        [
            {"instances": _instances(a, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])},
            {"instances": _instances([(10, 10, 20, 20)], [0.5], [1])},
        ],
    )
    ev.process([{"image_id": 3}], [{"instances": _instances([(10, 10, 20, 20)], [0.9], [1])}])
    res = ev.evaluate()
    assert set(res) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        expected = {
            "oLRP": 60.0,
            "oLRP_Loc": 10.0,
            "oLRP_FP": 25.0,
            "oLRP_FN": 25.0,
            "oLRP-cat": 70.0,
            "oLRP-dog": 50.0,
        }
        assert set(res[task]) == set(expected)
        for key, value in expected.items():
            assert abs(res[task][key] - value) < 1e-4, (task, key, res[task][key])
    with open(tmp_path / "out" / "olrp_results.json") as f:
        details = json.load(f)
    assert abs(details["bbox"]["per_class"]["3"]["threshold"] - 0.9) < 1e-6

    # An empty image list of detections: every class is missed entirely.
    ev.reset()
    ev.process([{"image_id": 1}], [{"instances": _instances([], [], [])}])
    res = ev.evaluate()
    assert res["bbox"]["oLRP"] == 100.0 and math.isnan(res["bbox"]["oLRP_Loc"])


def test_olrp_evaluator_rejects_keypoints(tiny_dataset):
    with pytest.raises(ValueError):
        OLRPEvaluator(tiny_dataset, tasks=("keypoints",))
