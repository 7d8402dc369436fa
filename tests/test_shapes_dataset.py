"""Tests of the synthetic shapes dataset (rs_detectron2/data/shapes/)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from rs_detectron2 import data  # the public API of the shapes dataset

SMALL = dict(num_train=24, num_val=8, image_size=(160, 160), seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes_small"))
    return data.generate_shapes(root, **SMALL)


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """The dataset at default sizes (240 train / 40 val, 160x160), generated once for the module."""
    return data.generate_shapes(str(tmp_path_factory.mktemp("shapes_default")))


def _load(path):
    with open(path) as f:
        return json.load(f)


def _all_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def _mask(segm, h, w):
    from pycocotools import mask as mask_utils

    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segm, h, w))).astype(bool)


def test_shapes_root_default(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert data.shapes_root() == os.path.join("datasets", "rs_shapes")
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/x")
    assert data.shapes_root() == "/data/x/rs_shapes"


def test_deterministic_bytes(small, tmp_path):
    again = data.generate_shapes(str(tmp_path / "other"), **SMALL)
    a, b = _all_files(small["root"]), _all_files(again["root"])
    assert len(a) == SMALL["num_train"] + SMALL["num_val"] + 5  # images, 4 jsons, manifest
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    other_seed = data.generate_shapes(str(tmp_path / "seed4"), **dict(SMALL, seed=4))
    with open(other_seed["coco_train"], "rb") as f:
        assert f.read() != a[os.path.join("annotations", "instances_train.json")]


def test_idempotent_and_regenerates(tmp_path):
    root = str(tmp_path / "d")
    params = dict(SMALL, num_train=6, num_val=3)
    first = data.generate_shapes(root, **params)
    assert first["status"] == "generated"
    stamp = {
        p: os.stat(p).st_mtime_ns
        for p in (first["coco_train"], first["lvis_val"], first["manifest"])
    }
    second = data.generate_shapes(root, **params)
    assert second["status"] == "up-to-date"
    assert stamp == {p: os.stat(p).st_mtime_ns for p in stamp}
    # other parameters: regenerated, stale images removed
    third = data.generate_shapes(root, **dict(params, num_train=4))
    assert third["status"] == "generated"
    assert sorted(os.listdir(third["train_images"])) == ["%06d.png" % i for i in range(1, 5)]
    assert len(_load(third["coco_train"])["images"]) == 4
    # a run killed before the manifest was written is redone
    os.remove(third["manifest"])
    assert data.generate_shapes(root, **dict(params, num_train=4))["status"] == "generated"
    os.remove(os.path.join(third["val_images"], "000002.png"))
    assert data.generate_shapes(root, **dict(params, num_train=4))["status"] == "generated"
    assert (
        data.generate_shapes(root, **dict(params, num_train=4), overwrite=True)["status"]
        == "generated"
    )
    assert not [f for f in os.listdir(os.path.join(root, "annotations")) if ".tmp" in f]


def test_coco_and_lvis_apis_load(small):
    from lvis import LVIS
    from pycocotools.coco import COCO

    h, w = SMALL["image_size"]
    for split in ("train", "val"):
        coco = COCO(small["coco_" + split])
        lvis = LVIS(small["lvis_" + split])
        assert sorted(coco.getCatIds()) == list(range(1, len(data.SHAPES_CLASSES) + 1))
        assert [coco.cats[i + 1]["name"] for i in range(len(data.SHAPES_CLASSES))] == list(
            data.SHAPES_CLASSES
        )
        assert len(coco.imgs) == SMALL["num_" + split] == len(lvis.imgs)
        assert coco.anns.keys() == lvis.anns.keys()
        per_image = {}
        for ann in coco.anns.values():
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
            assert ann["iscrowd"] == 0 and len(ann["segmentation"]) == 1
            poly = np.asarray(ann["segmentation"][0]).reshape(-1, 2)
            assert len(poly) >= 3
            assert poly.min() >= 0 and poly[:, 0].max() <= w and poly[:, 1].max() <= h
            x, y, bw, bh = ann["bbox"]
            assert np.allclose([x, y, x + bw, y + bh], [*poly.min(0), *poly.max(0)], atol=0.011)
            assert ann["area"] > 100 and ann["area"] <= bw * bh + 0.01
        assert set(per_image) == set(coco.imgs) and 1 <= min(per_image.values())
        assert max(per_image.values()) <= 4
        for img in lvis.imgs.values():
            # files are found the way Detectron2's load_lvis_json derives them from coco_url
            folder, fname = img["coco_url"].split("/")[-2:]
            assert os.path.isfile(os.path.join(small["root"], folder, fname)) and folder == split
            present = {a["category_id"] for a in lvis.img_ann_map[img["id"]]}
            assert img["not_exhaustive_category_ids"] == []
            all_ids = set(range(1, len(data.SHAPES_CLASSES) + 1))
            assert set(img["neg_category_ids"]) == all_ids - present
            assert (img["height"], img["width"]) == (h, w)
        for cat in lvis.cats.values():
            assert (
                cat["frequency"] in ("f", "c", "r")
                and cat["synonyms"] == [cat["name"]]
                and cat["def"]
            )


def test_non_square_images(tmp_path):
    from PIL import Image

    paths = data.generate_shapes(
        str(tmp_path), num_train=4, num_val=2, image_size=(120, 200), seed=1
    )
    coco = _load(paths["coco_val"])
    for img in coco["images"]:
        assert (img["height"], img["width"]) == (120, 200)
        with Image.open(os.path.join(paths["val_images"], img["file_name"])) as im:
            assert im.size == (200, 120) and im.mode == "RGB"
    for ann in coco["annotations"]:
        poly = np.asarray(ann["segmentation"][0]).reshape(-1, 2)
        assert poly[:, 0].max() <= 200 and poly[:, 1].max() <= 120 and poly.min() >= 0


def test_polygons_match_rendered_pixels(small):
    """Unoccluded objects (no later-drawn object overlaps them): the pixels painted in the object's
    flat colour are exactly the pycocotools rasterisation of its polygon; polygon area ~ pixel
    count."""
    from PIL import Image

    coco = _load(small["coco_train"])
    h, w = SMALL["image_size"]
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    checked = 0
    for img in coco["images"]:
        pixels = np.asarray(
            Image.open(os.path.join(small["train_images"], img["file_name"])).convert("RGB")
        )
        assert pixels.shape == (h, w, 3)
        anns = sorted(
            by_image[img["id"]], key=lambda a: a["id"]
        )  # annotation order = drawing order
        masks = [_mask(a["segmentation"], h, w) for a in anns]
        for j, (ann, m) in enumerate(zip(anns, masks, strict=True)):
            later = np.zeros((h, w), bool)
            for m2 in masks[j + 1 :]:
                later |= m2
            if (m & later).any():
                continue  # partly hidden by a later object: amodal polygon, not comparable
            others = np.zeros((h, w), bool)
            for m2 in masks[:j]:
                others |= m2
            colour = np.median(pixels[m], axis=0)
            same = np.abs(pixels.astype(int) - colour).max(axis=2) <= 2
            x, y, bw, bh = ann["bbox"]
            window = np.zeros((h, w), bool)
            window[max(0, int(y) - 2) : int(y + bh) + 3, max(0, int(x) - 2) : int(x + bw) + 3] = (
                True
            )
            drawn = same & window & ~(others & ~m)
            iou = (drawn & m).sum() / (drawn | m).sum()
            assert iou > 0.95, (img["id"], ann["id"], iou)
            assert abs(ann["area"] - m.sum()) <= 0.06 * m.sum() + 10, (ann["area"], m.sum())
            checked += 1
    assert checked >= 30


def _check_frequencies(paths, num_train):
    lvis_train, lvis_val = _load(paths["lvis_train"]), _load(paths["lvis_val"])
    images = {k: set() for k in range(1, len(data.SHAPES_CLASSES) + 1)}
    instances = dict.fromkeys(images, 0)
    for ann in lvis_train["annotations"]:
        images[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    for cat in lvis_train["categories"]:
        n = len(images[cat["id"]])
        assert cat["image_count"] == n and cat["instance_count"] == instances[cat["id"]]
        assert cat["frequency"] == data.frequency_group(n, num_train), cat
    assert lvis_val["categories"] == lvis_train["categories"]  # val carries the training statistics
    return {c["name"]: (c["frequency"], c["image_count"]) for c in lvis_train["categories"]}


def test_frequency_rule():
    assert data.frequency_thresholds(240) == (10, 100)  # LVIS's own thresholds at the default size
    assert data.frequency_thresholds(24) == (1, 10) and data.frequency_thresholds(1) == (1, 10)
    assert data.frequency_thresholds(480) == (20, 200)
    assert [data.frequency_group(n, 240) for n in (0, 1, 10, 11, 100, 101)] == [
        "r",
        "r",
        "r",
        "c",
        "c",
        "f",
    ]


def test_frequency_groups_small(small):
    groups = _check_frequencies(small, SMALL["num_train"])
    assert {g for g, _ in groups.values()} == {"f", "c", "r"}
    assert data.shapes_class_frequencies(small["root"]) == {k: g for k, (g, _) in groups.items()}


def test_long_tail_at_default_size(default):
    groups = _check_frequencies(default, 240)
    for name, (group, n) in groups.items():  # LVIS's rule, verbatim at 240 training images
        assert group == ("r" if 1 <= n <= 10 else "c" if n <= 100 else "f"), (name, n)
    assert sum(g == "f" for g, _ in groups.values()) >= 2
    assert sum(g == "c" for g, _ in groups.values()) >= 2
    assert sum(g == "r" for g, _ in groups.values()) >= 2
    val = _load(default["lvis_val"])
    val_counts = {k: set() for k in range(1, len(data.SHAPES_CLASSES) + 1)}
    for ann in val["annotations"]:
        val_counts[ann["category_id"]].add(ann["image_id"])
    assert min(len(v) for v in val_counts.values()) >= 2  # every class can be evaluated


def test_defaults_object():
    d = data.SHAPES_DEFAULTS
    assert (d.num_train, d.num_val, tuple(d.image_size), d.seed) == (240, 40, (160, 160), 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.num_train = 1  # frozen: the default sizes are not changed by accident


def _unregister_shapes():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    for name in data.SHAPES_DATASET_NAMES:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_registration_writes_nothing_loading_generates(tmp_path, monkeypatch):
    """register_shapes() only records names; the data appears when a shapes dataset is loaded or
    when metadata read from the files is asked for, and only then."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    root = tmp_path / "d2" / "rs_shapes"
    _unregister_shapes()
    try:
        small = dict(SMALL, num_train=6, num_val=3)
        assert data.register_shapes(**small) == list(data.SHAPES_DATASET_NAMES)
        assert data.register_shapes(**small) == list(data.SHAPES_DATASET_NAMES)  # harmless
        meta = MetadataCatalog.get("rs_shapes_lvis_val")
        assert meta.thing_classes == list(data.SHAPES_CLASSES) and meta.evaluator_type == "lvis"
        assert meta.image_root == os.path.join(str(root), "")
        assert not (tmp_path / "d2").exists()  # names, classes and folders need no file
        assert len(DatasetCatalog.get("rs_shapes_train")) == 6
        assert (root / "manifest.json").is_file() and len(os.listdir(root / "train")) == 6
        # the LVIS statistics come from the generated training split
        counts = {c["id"]: c["image_count"] for c in _load(meta.json_file)["categories"]}
        assert {c["id"]: c["image_count"] for c in meta.class_image_count} == counts
        assert len(meta.class_frequency) == len(data.SHAPES_CLASSES)
    finally:
        _unregister_shapes()


def test_metadata_generates_on_demand(tmp_path):
    """An evaluator opens metadata.json_file without loading the dataset first."""
    from detectron2.data import MetadataCatalog

    root = tmp_path / "lazy"
    _unregister_shapes()
    try:
        data.register_shapes(str(root), **dict(SMALL, num_train=5, num_val=2))
        assert not root.exists()
        json_file = MetadataCatalog.get("rs_shapes_val").json_file
        assert json_file == str(root / "annotations" / "instances_val.json")
        assert len(_load(json_file)["images"]) == 2
        with pytest.raises(TypeError, match="unexpected generate_shapes arguments"):
            data.register_shapes(str(root), num_trian=3)
        with pytest.raises(ValueError, match="at least 64 x 64"):
            data.register_shapes(str(root), image_size=(32, 32))
    finally:
        _unregister_shapes()


@pytest.fixture(scope="module")
def registered(default):
    names = data.register_shapes(default["root"])
    return default, names


def test_register_and_load(registered):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.lvis import load_lvis_json
    from detectron2.structures import BoxMode

    paths, names = registered
    assert tuple(names) == data.SHAPES_DATASET_NAMES
    assert data.register_shapes(paths["root"]) == names  # harmless the second time
    for name in names:
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(data.SHAPES_CLASSES)
        assert os.path.isfile(meta.json_file)
        assert meta.evaluator_type == ("lvis" if "lvis" in name else "coco")
    num_classes = len(data.SHAPES_CLASSES)
    assert len(MetadataCatalog.get("rs_shapes_lvis_train").class_image_count) == num_classes

    for split, n in (("train", 240), ("val", 40)):
        coco_dicts = DatasetCatalog.get("rs_shapes_" + split)
        lvis_dicts = DatasetCatalog.get("rs_shapes_lvis_" + split)
        assert len(coco_dicts) == len(lvis_dicts) == n
        for dc, dl in zip(coco_dicts, lvis_dicts, strict=True):
            assert os.path.isfile(dc["file_name"]) and dc["file_name"] == dl["file_name"]
            assert dc["image_id"] == dl["image_id"] and (dc["height"], dc["width"]) == (160, 160)
            assert 1 <= len(dc["annotations"]) == len(dl["annotations"]) <= 4
            for ac, al in zip(dc["annotations"], dl["annotations"], strict=True):
                assert ac["bbox_mode"] == al["bbox_mode"] == BoxMode.XYWH_ABS
                assert ac["category_id"] == al["category_id"] and 0 <= ac["category_id"] < 8
                assert ac["segmentation"] == al["segmentation"] and len(ac["segmentation"][0]) >= 6
                assert ac["bbox"] == al["bbox"]
            assert set(dl["neg_category_ids"]).isdisjoint(
                a["category_id"] + 1 for a in dl["annotations"]
            )
    direct = load_lvis_json(paths["lvis_val"], os.path.join(paths["root"], ""))
    assert [d["file_name"] for d in direct] == [
        d["file_name"] for d in DatasetCatalog.get("rs_shapes_val")
    ]


def test_evaluators_score_ground_truth_perfectly(registered, monkeypatch):
    """The registered metadata is enough for Detectron2's COCO and LVIS evaluators."""
    import numpy as np

    from detectron2.evaluation import COCOEvaluator, LVISEvaluator

    from rs_detectron2.utils.testing import evaluate_ground_truth

    monkeypatch.setattr(
        np, "float", float, raising=False
    )  # lvis 0.5.3 uses np.float (numpy >= 1.24)
    for name, cls in (("rs_shapes_val", COCOEvaluator), ("rs_shapes_lvis_val", LVISEvaluator)):
        results = evaluate_ground_truth(cls(name, tasks=("bbox", "segm"), distributed=False), name)
        for task in ("bbox", "segm"):
            assert results[task]["AP"] > 99.0, (name, task, results[task])
        if cls is LVISEvaluator:
            for key in ("APr", "APc", "APf"):
                assert results["segm"][key] > 99.0, (key, results["segm"])
