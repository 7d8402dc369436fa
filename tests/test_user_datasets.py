"""--dataset NAME:JSON:IMAGE_ROOT: COCO- and LVIS-format files written here from the shapes
generator (with non-contiguous category ids), registration, loading, evaluation, every error, and
the dataset check command."""

import json
import logging
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from rs_detectron2.data import (
    SHAPES_CLASSES,
    UserDatasetError,
    generate_shapes,
    get_training_dataset_dicts,
    parse_dataset_spec,
    register_user_dataset,
    register_user_datasets,
)
from rs_detectron2.data.check import main as check_main
from rs_detectron2.evaluation import build_evaluator
from rs_detectron2.utils.testing import evaluate_ground_truth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ID = {k + 1: 10 * (k + 1) + 3 for k in range(len(SHAPES_CLASSES))}  # 1..8 -> 13, 23, ..., 83


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(
        str(tmp_path_factory.mktemp("ud_shapes")),
        num_train=6,
        num_val=4,
        image_size=(96, 96),
        seed=5,
    )


def _load(path):
    with open(path) as f:
        return json.load(f)


def _remap(data):
    """Category ids 1..K -> ID (non-contiguous), everywhere they occur."""
    for c in data["categories"]:
        c["id"] = ID[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = ID[a["category_id"]]
    for im in data["images"]:
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if key in im:
                im[key] = [ID[c] for c in im[key]]
    return data


def _write(tmp_path, data, fname="ann.json"):
    path = tmp_path / fname
    path.write_text(json.dumps(data))
    return str(path)


def _name():
    return f"ud_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup():
    names = []
    yield names
    for n in names:
        if n in DatasetCatalog.list():
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def _register(cleanup, name, json_file, root, **kw):
    cleanup.append(name)
    return register_user_dataset(name, json_file, root, **kw)


def _gt_score(name, fast):
    ev = build_evaluator(name, fast=fast, tasks=("bbox", "segm"), distributed=False)
    return evaluate_ground_truth(ev, name)


# --------------------------------------------------------------------------------- happy paths


def test_coco_format_with_noncontiguous_ids(shapes, tmp_path, cleanup):
    data = _remap(_load(shapes["coco_val"]))
    path = _write(tmp_path, data)
    name = _name()
    report = _register(cleanup, name, path, shapes["val_images"])
    assert report.format == "coco" and report.num_images == 4
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "coco"
    assert meta.thing_classes == list(SHAPES_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {ID[k + 1]: k for k in range(8)}
    assert meta.json_file == os.path.abspath(path)
    dicts = DatasetCatalog.get(name)
    original = {a["id"]: a["category_id"] for a in _load(shapes["coco_val"])["annotations"]}
    assert len(dicts) == 4 and all(os.path.isfile(d["file_name"]) for d in dicts)
    cats = sorted(a["category_id"] for d in dicts for a in d["annotations"])
    assert cats == sorted(c - 1 for c in original.values())
    # ids are mapped back for evaluation: ground truth as predictions scores 100
    res = _gt_score(name, fast=True)
    assert res["bbox"]["AP"] > 99 and res["segm"]["AP"] > 99
    # registering the same files again is a no-op, through the --dataset helper too
    assert register_user_dataset(name, path, shapes["val_images"]) is report
    assert register_user_datasets([f"{name}:{path}:{shapes['val_images']}"]) == [name]


@pytest.mark.parametrize("locate", ["coco_url", "file_name"])
def test_lvis_format_with_noncontiguous_ids(shapes, tmp_path, cleanup, locate, monkeypatch):
    import numpy as np

    monkeypatch.setattr(np, "float", float, raising=False)
    data = _remap(_load(shapes["lvis_val"]))
    if locate == "file_name":
        for im in data["images"]:
            im["file_name"] = "val/" + im.pop("coco_url").split("/")[-1]
    path = _write(tmp_path, data)
    name = _name()
    (spec_name,) = register_user_datasets([f"{name}:{path}:{shapes['root']}"])
    cleanup.append(name)
    meta = MetadataCatalog.get(spec_name)
    assert meta.evaluator_type == "lvis" and meta.thing_classes == list(SHAPES_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id[ID[1]] == 0
    cats = sorted(data["categories"], key=lambda c: c["id"])
    assert meta.class_frequency == [c["frequency"] for c in cats]
    assert [c["id"] for c in meta.class_image_count] == [c["id"] for c in cats]
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 4 and all(os.path.isfile(d["file_name"]) for d in dicts)
    assert all(0 <= a["category_id"] < 8 for d in dicts for a in d["annotations"])
    assert set(dicts[0]["neg_category_ids"]) <= set(ID.values())
    groups = {"AP"} | {"AP" + c["frequency"] for c in cats}
    assert len(groups) >= 3
    for fast in (True, False):
        res = _gt_score(name, fast)
        for key in groups:
            assert res["segm"][key] > 99, (fast, key, res["segm"])


def test_images_without_annotations_kept_for_eval_dropped_for_training(
    shapes, tmp_path, cleanup, caplog
):
    data = _load(shapes["coco_train"])
    empty_id = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != empty_id]
    data["annotations"].append(dict(data["annotations"][0], id=10**6, image_id=999))  # orphan
    path = _write(tmp_path, data)
    name = _name()
    with caplog.at_level(logging.INFO):
        report = _register(cleanup, name, path, shapes["train_images"])
        assert report.images_without_annotations == 1
        assert len(DatasetCatalog.get(name)) == 6
        train = get_training_dataset_dicts(name)
    assert len(train) == 5 and empty_id not in {d["image_id"] for d in train}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "1 of 6 images have no annotation" in text
    assert "1 annotations refer to image ids that are not in 'images'" in text
    assert "Removed 1 images with no usable annotations" in text


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec", ["", "a:b", "a::c", "a:b:c:d", ":b:c"])
def test_bad_spec(spec):
    with pytest.raises(UserDatasetError, match="NAME:JSON:IMAGE_ROOT"):
        parse_dataset_spec(spec)
    with pytest.raises(UserDatasetError):
        register_user_datasets([spec])


def test_spec_parts():
    spec = parse_dataset_spec(" n:a/b.json:imgs ")
    assert (spec.name, spec.json_file, spec.image_root) == ("n", "a/b.json", "imgs")


def _broken(kind, shapes, tmp_path):
    """(json path, image root, expected message regex) for one kind of broken input."""
    root = shapes["val_images"]
    data = _load(shapes["coco_val"])
    if kind == "missing_json":
        return str(tmp_path / "nope.json"), root, r"nope\.json does not exist"
    if kind == "invalid_json":
        text = json.dumps(data)
        (tmp_path / "bad.json").write_text(text[: len(text) // 2])
        return str(tmp_path / "bad.json"), root, r"bad\.json is not valid JSON: .*line 1, column"
    if kind == "not_an_object":
        return _write(tmp_path, [1, 2]), root, "holds a JSON list"
    if kind == "no_categories":
        del data["categories"]
        return _write(tmp_path, data), root, "no 'categories' list"
    if kind == "missing_root":
        return shapes["coco_val"], str(tmp_path / "no_images"), "Image folder .* does not exist"
    if kind == "missing_images":
        copy_root = tmp_path / "imgs"
        shutil.copytree(root, copy_root)
        for im in data["images"][:2]:
            os.remove(copy_root / im["file_name"])
        return (
            shapes["coco_val"],
            str(copy_root),
            r"2 of 4 image files are missing under .*000001\.png",
        )
    if kind == "unknown_category":
        data["annotations"][0]["category_id"] = 999
        data["annotations"][1]["category_id"] = 999
        data["annotations"][2]["category_id"] = 1000
        return (
            _write(tmp_path, data),
            root,
            (
                r"3 annotations use category ids that are not in 'categories': "
                r"999 \(2 annotations\), 1000 \(1 annotations\)"
            ),
        )
    if kind == "duplicate_ann_ids":
        data["annotations"][1]["id"] = data["annotations"][0]["id"]
        return _write(tmp_path, data), root, "duplicate annotation ids"
    if kind == "no_size":
        del data["images"][0]["height"]
        return _write(tmp_path, data), root, "1 images have no integer 'height'/'width'"
    lvis = _load(shapes["lvis_val"])
    if kind == "lvis_no_neg":
        del lvis["images"][1]["neg_category_ids"]
        return _write(tmp_path, lvis), shapes["root"], "1 of 4 images have no 'neg_category_ids'"
    if kind == "lvis_no_frequency":
        del lvis["categories"][2]["frequency"]
        return _write(tmp_path, lvis), shapes["root"], "1 categories have no 'frequency'"
    raise KeyError(kind)


BROKEN = [
    "missing_json",
    "invalid_json",
    "not_an_object",
    "no_categories",
    "missing_root",
    "missing_images",
    "unknown_category",
    "duplicate_ann_ids",
    "no_size",
    "lvis_no_neg",
    "lvis_no_frequency",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_registration_errors(kind, shapes, tmp_path, cleanup):
    path, root, message = _broken(kind, shapes, tmp_path)
    name = _name()
    cleanup.append(name)
    with pytest.raises(UserDatasetError, match=message):
        register_user_dataset(name, path, root)
    assert name not in DatasetCatalog.list()


def test_name_conflicts(shapes, tmp_path, cleanup):
    with pytest.raises(UserDatasetError, match="already registered"):
        register_user_dataset("coco_2017_train", shapes["coco_val"], shapes["val_images"])
    name = _name()
    _register(cleanup, name, shapes["coco_val"], shapes["val_images"])
    with pytest.raises(UserDatasetError, match="already registered"):
        register_user_dataset(name, shapes["coco_train"], shapes["train_images"])
    other = _name()
    spec = f"{other}:{shapes['coco_val']}:{shapes['val_images']}"
    with pytest.raises(UserDatasetError, match="given more than once"):
        register_user_datasets([spec, spec])


def test_train_net_flag():
    from rs_detectron2.engine import default_argument_parser

    args = default_argument_parser().parse_args(
        ["--config-file", "c.py", "--dataset", "a:b.json:c", "--dataset", "d:e.json:f"]
    )
    assert args.dataset == ["a:b.json:c", "d:e.json:f"]
    assert default_argument_parser().parse_args(["--config-file", "c.py"]).dataset == []


# ----------------------------------------------------------------------------- check command


def test_check_ok_and_stats(shapes, capsys, cleanup):
    name = _name()
    cleanup.append(name)
    rc = check_main(["--dataset", f"{name}:{shapes['lvis_train']}:{shapes['root']}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "format LVIS: 6 images (0 missing, 0 without annotations)" in out
    assert (
        "LVIS frequency groups" in out
        and "loaded 6 images" in out
        and out.rstrip().endswith("OK: 0 error(s), 0 warning(s)")
    )


@pytest.mark.parametrize("kind", ["missing_images", "unknown_category", "invalid_json"])
def test_check_reports_problems(kind, shapes, tmp_path, capsys, cleanup):
    path, root, message = _broken(kind, shapes, tmp_path)
    name = _name()
    cleanup.append(name)
    rc = check_main(["--dataset", f"{name}:{path}:{root}"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "ERROR" in out and "FAILED" in out
    import re

    assert re.search(message, out), out


def test_check_degenerate_and_strict(shapes, tmp_path, capsys, cleanup):
    data = _load(shapes["coco_val"])
    data["annotations"][0]["bbox"][2] = 0.0  # zero width
    data["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # 2-point polygon
    path = _write(tmp_path, data)
    name = _name()
    cleanup.append(name)
    spec = f"{name}:{path}:{shapes['val_images']}"
    assert check_main(["--dataset", spec]) == 0
    out = capsys.readouterr().out
    assert "2 annotations are degenerate (1 zero_area_bbox, 1 empty_segmentation)" in out
    assert check_main(["--strict", "--dataset", spec]) == 1
    assert check_main(["not_a_registered_dataset"]) == 1
    assert "not a registered dataset" in capsys.readouterr().out


def test_check_config_num_classes(shapes, capsys, cleanup):
    data = _load(shapes["coco_val"])
    data["categories"] = data["categories"][:3]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 3]
    path = os.path.join(os.path.dirname(shapes["coco_val"]), "three.json")
    with open(path, "w") as f:
        json.dump(data, f)
    name = _name()
    cleanup.append(name)
    cfg = os.path.join(REPO, "configs", "quick_schedules", "rs_mask_rcnn_tiny.py")
    argv = [
        "--config-file",
        cfg,
        "--dataset",
        f"{name}:{path}:{shapes['val_images']}",
        f"dataloader.train.dataset.names={name}",
        f"dataloader.test.dataset.names={name}",
    ]
    assert check_main(argv + ["--no-load"]) == 1
    assert "has 3 classes but the model predicts 8" in capsys.readouterr().out
    assert check_main(argv + ["model.roi_heads.num_classes=3", "--no-load"]) == 0


def test_check_command_line(shapes, tmp_path):
    path, root, _ = _broken("missing_images", shapes, tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rs_detectron2.data.check",
            "--no-load",
            "--dataset",
            f"x_cli:{path}:{root}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 of 4 image files are missing" in proc.stdout
