"""faster-coco-eval gives the same COCO and LVIS numbers as pycocotools / lvis-api: the two sides
of ``build_evaluator(fast=...)``; the stock LVIS side runs lvis-api on numpy >= 1.24.

A small synthetic dataset (octagon-shaped objects of all three COCO area groups, a few crowd
regions, skewed class frequencies for LVIS) is written to tmp_path; random-ish detections (jittered
ground truth, wrong classes, background boxes, random scores) go through the evaluators'
process/evaluate exactly as model outputs would.
"""

import json
import math
import uuid

import numpy as np
import pytest
import torch

pytest.importorskip("faster_coco_eval")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from rs_detectron2.evaluation import (  # noqa: E402
    FastCOCOEvaluator,
    FastLVISEvaluator,
    LVISAPIEvaluator,
    build_evaluator,
)

SIZES = [(120, 160), (160, 160), (200, 140), (96, 128), (180, 200), (140, 120)]  # (h, w)
CAT_IDS = [1, 2, 5]  # non-contiguous on purpose (COCO)


def _octagon(x, y, w, h):
    """Polygon of an octagon inscribed in the box: its mask area differs from the box area."""
    cx, cy = w / 4, h / 4
    pts = [
        (x + cx, y),
        (x + w - cx, y),
        (x + w, y + cy),
        (x + w, y + h - cy),
        (x + w - cx, y + h),
        (x + cx, y + h),
        (x, y + h - cy),
        (x, y + cy),
    ]
    return [float(v) for p in pts for v in p]


def _synthetic(seed, cat_ids, cat_weights, crowd=True):
    """images, annotations (with polygon segmentation) of a random dataset."""
    from pycocotools import mask as mask_utils

    rng = np.random.RandomState(seed)
    images, anns = [], []
    for i, (h, w) in enumerate(SIZES, start=1):
        images.append({"id": i, "height": h, "width": w, "file_name": f"{i:06d}.jpg"})
        for _ in range(rng.randint(2, 7)):
            side = float(rng.choice([12, 40, 110]))  # small, medium and large objects
            bw = min(side * rng.uniform(0.7, 1.3), w - 2)
            bh = min(side * rng.uniform(0.7, 1.3), h - 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            poly = _octagon(x, y, bw, bh)
            area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects([poly], h, w))))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(rng.choice(cat_ids, p=cat_weights)),
                    "bbox": [x, y, bw, bh],
                    "area": area,
                    "segmentation": [poly],
                    "iscrowd": int(crowd and rng.rand() < 0.1),
                }
            )
    return images, anns


def _outputs(images, anns, cat_ids, seed, contiguous, crowded=0):
    """Model-like outputs: per image an Instances with boxes, scores, classes and masks; the
    first image also gets ``crowded`` extra background detections of the first class."""
    rng = np.random.RandomState(seed + 100)
    inputs, outputs = [], []
    for img in images:
        h, w = img["height"], img["width"]
        boxes, classes = [], []
        for a in anns:
            if a["image_id"] != img["id"]:
                continue
            for _ in range(rng.randint(0, 3)):  # misses, hits and duplicates
                x, y, bw, bh = a["bbox"]
                j = rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
                boxes.append([x + j[0], y + j[1], x + bw + j[2], y + bh + j[3]])
                cat = a["category_id"] if rng.rand() < 0.85 else int(rng.choice(cat_ids))
                classes.append(contiguous[cat])
        num_bg = rng.randint(1, 4) + (crowded if img is images[0] else 0)
        for k in range(num_bg):  # background detections
            bw, bh = rng.uniform(8, 60, 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes.append([x, y, x + bw, y + bh])
            classes.append(
                contiguous[cat_ids[0] if k >= num_bg - crowded else int(rng.choice(cat_ids))]
            )
        n = len(boxes)
        boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(n, 4)
        boxes_t[:, 0::2] = boxes_t[:, 0::2].clamp(0, w)
        boxes_t[:, 1::2] = boxes_t[:, 1::2].clamp(0, h)
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(boxes_t)
        inst.scores = torch.tensor(rng.rand(n), dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        masks = torch.zeros((n, h, w), dtype=torch.bool)
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        for k, (x0, y0, x1, y1) in enumerate(boxes_t.tolist()):  # ellipses inside the boxes
            cx, cy, rx, ry = (
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                max((x1 - x0) / 2, 1),
                max((y1 - y0) / 2, 1),
            )
            masks[k] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        inst.pred_masks = masks
        inputs.append({"image_id": img["id"], "height": h, "width": w})
        outputs.append({"instances": inst})
    return inputs, outputs


def _run(evaluator, inputs, outputs):
    evaluator.reset()
    for i in range(0, len(inputs), 2):  # batches of 2
        evaluator.process(inputs[i : i + 2], outputs[i : i + 2])
    return evaluator.evaluate()


def _assert_same(a, b, tol=1e-6):
    assert set(a) == set(b) and a
    for task in a:
        assert set(a[task]) == set(b[task]), task
        for key, va in a[task].items():
            vb = b[task][key]
            assert (math.isnan(va) and math.isnan(vb)) or abs(va - vb) <= tol, (task, key, va, vb)


def _compare_fast_and_stock(dataset, max_dets, classes):
    """Evaluate box and mask outputs of ``dataset`` with ``build_evaluator(fast=True)`` and
    ``build_evaluator(fast=False)``, check the evaluator ``classes`` (fast, stock), assert that
    every metric agrees, and return the fast evaluator's box results."""
    name, (inputs, outputs) = dataset
    results = {}
    for fast, cls in zip((True, False), classes, strict=True):
        ev = build_evaluator(name, fast=fast, tasks=("bbox", "segm"), max_dets_per_image=max_dets)
        assert type(ev) is cls
        results[fast] = _run(ev, inputs, outputs)
    _assert_same(results[True], results[False])
    return results[True]["bbox"]


@pytest.fixture(scope="module")
def coco_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_coco")
    images, anns = _synthetic(0, CAT_IDS, [0.5, 0.3, 0.2])
    cats = [{"id": c, "name": f"class_{c}"} for c in CAT_IDS]
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    name = f"fast_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(root))
    DatasetCatalog.get(name)  # sets thing_dataset_id_to_contiguous_id, as a test loader does
    contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    yield name, _outputs(images, anns, CAT_IDS, 0, contiguous, crowded=14)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.parametrize("max_dets", [None, 12])
def test_coco_fast_and_stock_identical(coco_dataset, max_dets):
    # max_dets=12 takes Detectron2's COCOevalMaxDets path and truncates the first image's class 1
    # (more than 14 detections there). Values below 10 would not truncate anything: COCOeval sorts
    # maxDets [1, 10, n] and then uses the largest.
    bbox = _compare_fast_and_stock(coco_dataset, max_dets, (FastCOCOEvaluator, COCOEvaluator))
    assert {"AP", "AP50", "APs", "APm", "APl", "AP-class_5"} <= set(bbox)
    assert 5 < bbox["AP50"] < 95  # neither trivial nor empty


def test_coco_no_detections(coco_dataset):
    name, (inputs, _) = coco_dataset
    ev = FastCOCOEvaluator(name, tasks=("bbox",))
    empty = [
        {
            "instances": Instances(
                (10, 10),
                pred_boxes=Boxes(torch.zeros(0, 4)),
                scores=torch.zeros(0),
                pred_classes=torch.zeros(0).long(),
            )
        }
    ]
    res = _run(ev, inputs[:1], empty)
    assert math.isnan(res["bbox"]["AP"])


def test_missing_package_message(coco_dataset, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faster(mod, *args, **kwargs):
        if mod.startswith("faster_coco_eval"):
            raise ImportError("simulated")
        return real_import(mod, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faster)
    with pytest.raises(ImportError, match="pip install faster-coco-eval"):
        FastCOCOEvaluator(coco_dataset[0])


@pytest.fixture(scope="module")
def lvis_dataset(tmp_path_factory):
    """LVIS-format json (frequencies r/c/f, negative and not-exhaustive labels), ids 1..K."""
    root = tmp_path_factory.mktemp("fast_lvis")
    cat_ids = [1, 2, 3, 4]
    images, anns = _synthetic(2, cat_ids, [0.45, 0.3, 0.15, 0.1], crowd=False)  # r: 2 objects
    for a in anns:
        del a["iscrowd"]
    freq = {1: "f", 2: "f", 3: "c", 4: "r"}
    cats = [
        {
            "id": c,
            "name": f"lvis_{c}",
            "frequency": freq[c],
            "synset": f"s{c}.n.01",
            "image_count": 1,
            "instance_count": 1,
        }
        for c in cat_ids
    ]
    rng = np.random.RandomState(5)
    for img in images:
        present = {a["category_id"] for a in anns if a["image_id"] == img["id"]}
        absent = [c for c in cat_ids if c not in present]
        img["neg_category_ids"] = [c for c in absent if rng.rand() < 0.6]
        img["not_exhaustive_category_ids"] = [c for c in present if rng.rand() < 0.3]
        img["coco_url"] = f"http://images.cocodataset.org/val2017/{img['file_name']}"
    json_file = root / "lvis.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    name = f"fast_lvis_{uuid.uuid4().hex[:8]}"
    # Registered by hand (see the Detectron2 notes); no id mapping: LVIS ids = contiguous + 1.
    MetadataCatalog.get(name).set(
        json_file=str(json_file), thing_classes=[c["name"] for c in cats], evaluator_type="lvis"
    )
    yield name, _outputs(images, anns, cat_ids, 2, {c: c - 1 for c in cat_ids})
    MetadataCatalog.remove(name)


@pytest.fixture
def without_np_float(monkeypatch):
    """numpy without the ``np.float`` alias during the test (as numpy >= 1.24), restored after."""
    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.delattr(np, "float")


@pytest.mark.parametrize("max_dets", [None, 5])
def test_lvis_fast_and_stock_identical(lvis_dataset, max_dets, without_np_float):
    # The stock side is lvis-api, which needs np.float: it exists only while lvis-api evaluates.
    classes = (FastLVISEvaluator, LVISAPIEvaluator)
    bbox = _compare_fast_and_stock(lvis_dataset, max_dets, classes)
    assert "float" not in vars(np)
    assert set(bbox) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"}
    assert 5 < bbox["AP50"] < 95


def test_lvis_api_keeps_numpy_float(lvis_dataset, monkeypatch):
    """Where numpy still has ``np.float`` (numpy < 1.24) the fix leaves it alone."""
    alias = type("float", (float,), {})  # a stand-in that lvis-api's astype(dtype=...) accepts
    monkeypatch.setattr(np, "float", alias, raising=False)
    name, (inputs, outputs) = lvis_dataset
    res = _run(LVISAPIEvaluator(name, tasks=("bbox",)), inputs, outputs)
    assert 5 < res["bbox"]["AP50"] < 95
    assert vars(np)["float"] is alias
