"""``python -m rs_detectron2.data.check`` on tiny COCO datasets written here (JSON + PNGs): each
image and geometry check, with its message, its fix and the exit code."""

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from rs_detectron2.data import (
    Finding,
    check_dataset,
    format_findings,
    register_user_dataset,
    required_mask_format,
)
from rs_detectron2.data.check import main as check_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 40, 60
SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]  # 20 x 20 at (10, 10)


def _coco(n_images=3):
    """A valid 2-class COCO set: one square per image, polygon masks."""
    images = [
        {"id": i, "file_name": f"{i:03d}.png", "height": H, "width": W}
        for i in range(1, n_images + 1)
    ]
    anns = [
        {
            "id": 100 + i,
            "image_id": i,
            "category_id": 1 + i % 2,
            "bbox": [10.0, 10.0, 20.0, 20.0],
            "segmentation": [list(SQUARE)],
            "area": 400.0,
            "iscrowd": 0,
        }
        for i in range(1, n_images + 1)
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": anns, "categories": cats}


def _write(tmp_path, data):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    for im in data["images"]:
        path = root / im["file_name"]
        if not path.exists():
            Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(path)
    json_file = tmp_path / "ann.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(root)


@pytest.fixture
def run(tmp_path, capsys):
    """Run the check command on a dataset; returns (exit code, printed report)."""
    names = []

    def _run(data, *extra, prepare=None):
        json_file, root = _write(tmp_path, data)
        if prepare is not None:
            prepare(root)
        name = f"dc_{uuid.uuid4().hex[:8]}"
        names.append(name)
        rc = check_main(["--dataset", f"{name}:{json_file}:{root}", "--no-progress", *extra])
        return rc, capsys.readouterr().out

    yield _run
    for n in names:
        if n in DatasetCatalog.list():
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_clean_dataset_passes(run, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    rc, out = run(_coco())
    assert rc == 0, out
    assert "decoded all of 3 image files" in out and "loaded 3 images" in out
    assert out.rstrip().endswith("OK: 0 error(s), 0 warning(s)")
    assert not (tmp_path / "d2").exists()  # checking user data never writes the shapes set


def test_unreadable_image(run):
    def corrupt(root):
        with open(os.path.join(root, "002.png"), "wb") as f:
            f.write(b"this is not a PNG file")

    rc, out = run(_coco(), prepare=corrupt)
    assert rc == 1, out
    assert "ERROR: " in out and "1 of 3 decoded image files cannot be read" in out
    assert "002.png" in out and "fix: replace or re-export these files" in out


def test_truncated_image(run):
    def truncate(root):
        path = os.path.join(root, "003.png")
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)).save(path)
        with open(path, "rb") as f:
            head = f.read()
        with open(path, "wb") as f:
            f.write(head[: len(head) // 2])

    rc, out = run(_coco(), prepare=truncate)
    assert rc == 1, out
    assert "1 of 3 decoded image files cannot be read" in out and "003.png" in out
    # --no-images skips the decoding: the truncated file is not noticed
    rc, out = run(_coco(), "--no-images", prepare=truncate)
    assert rc == 0, out
    assert "decoded" not in out


def test_size_mismatch(run):
    data = _coco()
    data["images"][0]["height"], data["images"][0]["width"] = W, H  # swapped
    rc, out = run(data)
    assert rc == 1, out
    assert "1 of 3 decoded images differ in size from the annotation file" in out
    assert "001.png (declared 40 x 60, decoded 60 x 40)" in out
    assert "width and height look swapped" in out


def test_sample(run):
    def corrupt_all(root):
        for f in os.listdir(root):
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"broken")

    rc, out = run(_coco(n_images=6), "--sample", "2", prepare=corrupt_all)
    assert rc == 1, out
    assert "decoded a random sample of 2 (--sample) of 6 image files" in out
    assert "2 of 2 decoded image files cannot be read" in out


def test_box_outside_image(run):
    data = _coco(n_images=4)
    data["annotations"][0]["bbox"] = [50.0, 30.0, 20.0, 20.0]  # partly outside (60 x 40 image)
    data["annotations"][0]["segmentation"] = [[50.0, 30.0, 70.0, 30.0, 70.0, 50.0, 50.0, 50.0]]
    rc, out = run(data)
    assert rc == 0, out  # Detectron2 clips it: a warning
    assert "WARNING: " in out and "1 annotations have a box that extends beyond" in out
    assert "annotation 101 in 001.png" in out and "fix: clip the boxes to the image" in out
    assert run(data, "--strict")[0] == 1
    data["annotations"][1]["bbox"] = [100.0, 100.0, 5.0, 5.0]  # entirely outside
    data["annotations"][1]["segmentation"] = [[100.0, 100.0, 105.0, 100.0, 105.0, 105.0]]
    rc, out = run(data)
    assert rc == 1, out
    assert "1 annotations have a box entirely outside their image" in out
    assert "annotation 102 in 002.png" in out


def test_polygon_outside_its_box(run):
    data = _coco()
    data["annotations"][2]["segmentation"] = [[40.0, 5.0, 55.0, 5.0, 55.0, 20.0, 40.0, 20.0]]
    rc, out = run(data)
    assert rc == 1, out
    assert "1 annotations have a mask far from their own box" in out
    assert "annotation 103 in 003.png (box [10, 10, 30, 30]" in out
    assert "fix: recompute each 'bbox' from its mask" in out
    # every box written as [x0, y0, x1, y1]: the fix says so
    for a in data["annotations"]:
        a["bbox"] = [10.0, 10.0, 30.0, 30.0]
        a["segmentation"] = [list(SQUARE)]
    rc, out = run(data)
    assert rc == 1 and "3 annotations have a mask far from their own box" in out
    assert "the boxes look like [x0, y0, x1, y1]" in out


def test_zero_area_mask_and_rle_size(run):
    data = _coco()
    data["annotations"][0]["segmentation"] = [[10.0, 10.0, 20.0, 20.0, 30.0, 30.0]]  # a line
    rc, out = run(data)
    assert rc == 0 and "1 annotations have a mask of (almost) zero area" in out, out
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.ones((H + 1, W), np.uint8)))
    data["annotations"][1]["segmentation"] = {"size": [H + 1, W], "counts": rle["counts"].decode()}
    rc, out = run(data)
    assert rc == 1, out
    assert "1 annotations have an RLE mask whose 'size' is not their image's" in out
    assert "annotation 102 in 002.png (RLE size [41, 60], image 40 x 60" in out


def test_two_point_polygon_is_counted_once_as_dropped(run):
    data = _coco()
    data["annotations"][0]["segmentation"] = [[10.0, 10.0, 30.0, 30.0]]  # Detectron2 drops it
    rc, out = run(data)
    assert rc == 0, out
    # the statistics and the warning say the same: training drops that annotation
    assert "training would drop 1 degenerate annotations (1 empty_segmentation)" in out
    assert "1 annotations are degenerate (1 empty_segmentation): training drops them" in out
    assert "would drop 0" not in out


def _rle_data():
    from pycocotools import mask as mask_utils

    data = _coco()
    m = np.zeros((H, W), np.uint8)
    m[10:30, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    data["annotations"][0]["segmentation"] = {"size": [H, W], "counts": rle["counts"].decode()}
    return data


def test_rle_masks_mask_format(run, tmp_path):
    rc, out = run(_rle_data())
    assert rc == 0, out  # usable, but not with the shipped configs' polygon format
    assert "1 non-crowd annotations have RLE masks: train with mask format bitmask" in out
    assert "fix: add the override dataloader.train.mapper.instance_mask_format=bitmask" in out
    cfg = os.path.join(REPO, "configs", "quick_schedules", "rs_mask_rcnn_tiny.py")
    json_file, root = _write(tmp_path, _rle_data())
    name = f"dc_{uuid.uuid4().hex[:8]}"
    argv = ["--config-file", cfg, "--dataset", f"{name}:{json_file}:{root}", "--no-progress"]
    argv += [f"dataloader.train.dataset.names={name}", f"dataloader.test.dataset.names={name}"]
    argv += ["model.roi_heads.num_classes=2"]
    try:
        assert check_main(argv) == 1
        assert required_mask_format([name]) == "bitmask"
        ok = check_main(argv + ["dataloader.train.mapper.instance_mask_format=bitmask"])
        assert ok == 0
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_required_mask_format(tmp_path):
    names = []
    for i, data in enumerate((_coco(), _rle_data())):
        d = tmp_path / str(i)
        d.mkdir()
        json_file, root = _write(d, data)
        names.append(f"dc_{uuid.uuid4().hex[:8]}")
        register_user_dataset(names[-1], json_file, root)
    nomask = _coco()
    for a in nomask["annotations"]:
        del a["segmentation"]
    (tmp_path / "n").mkdir()
    json_file, root = _write(tmp_path / "n", nomask)
    names.append(f"dc_{uuid.uuid4().hex[:8]}")
    register_user_dataset(names[-1], json_file, root)
    try:
        assert required_mask_format(names[:1]) == "polygon"
        assert required_mask_format(names[:2]) == "bitmask"
        assert required_mask_format(names[2:]) is None
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_class_count_mismatch_names_the_override(tmp_path):
    json_file, root = _write(tmp_path, _coco())
    cfg = os.path.join(REPO, "configs", "quick_schedules", "rs_mask_rcnn_tiny.py")
    dense = os.path.join(REPO, "configs", "quick_schedules", "rs_atss_tiny.py")
    spec = f"mine:{json_file}:{root}"
    names = ["dataloader.train.dataset.names=mine", "dataloader.test.dataset.names=mine"]
    for config, key in ((cfg, "model.roi_heads.num_classes"), (dense, "model.num_classes")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "rs_detectron2.data.check",
                "--config-file",
                config,
                "--dataset",
                spec,
                "--no-images",
                "--no-load",
                *names,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "ERROR: mine has 2 classes but the model predicts 8" in proc.stdout
        assert f"fix: add the override {key}=2" in proc.stdout


def test_check_dataset_returns_findings_and_prints_nothing(tmp_path, capsys):
    data = _coco()
    data["annotations"][0]["bbox"] = [50.0, 30.0, 20.0, 20.0]
    data["annotations"][0]["segmentation"] = [[50.0, 30.0, 70.0, 30.0, 70.0, 50.0, 50.0, 50.0]]
    json_file, root = _write(tmp_path, data)
    name = f"dc_{uuid.uuid4().hex[:8]}"
    register_user_dataset(name, json_file, root)
    try:
        findings = check_dataset(name, num_classes=2, progress=False)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert capsys.readouterr().out == ""
    assert all(isinstance(f, Finding) for f in findings)
    (box,) = [f for f in findings if f.code == "box_partly_outside_image"]
    assert (box.severity, box.annotation_id, box.image_id, box.count) == ("warning", 101, 1, 1)
    assert box.file.endswith("001.png") and box.fix
    assert not [f for f in findings if f.severity == "error"]
    report = format_findings(findings)
    assert report.splitlines()[0] == f"== {name}"
    assert report.endswith("OK: 0 error(s), 1 warning(s)")
    assert format_findings(findings, strict=True).endswith("FAILED: 0 error(s), 1 warning(s)")


def test_one_dataset_flag():
    import argparse

    from rs_detectron2.data import add_dataset_argument
    from rs_detectron2.data.check import build_parser

    parser = add_dataset_argument(argparse.ArgumentParser())
    args = parser.parse_args(["--dataset", "a:b.json:c", "--dataset", "d:e.json:f"])
    assert args.dataset == ["a:b.json:c", "d:e.json:f"]
    assert parser.parse_args([]).dataset == []
    check_args = build_parser().parse_args(["--dataset", "a:b.json:c", "--sample", "5"])
    assert check_args.dataset == ["a:b.json:c"] and check_args.sample == 5
