"""Predicting with a trained model: ``LazyPredictor``, ``python -m rs_detectron2.predict`` and the
per-class LRP-optimal thresholds that ``train_net.py --eval-only --lrp-thresholds-out`` writes.

One tiny RS Mask R-CNN is trained for a few iterations (a module fixture) and evaluated on a small
COCO-format copy of the first shapes validation images, so that every run here stays short.
"""

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image

from rs_detectron2.data import SHAPES_CLASSES, register_shapes, register_user_datasets
from rs_detectron2.engine import default_argument_parser, prepare_run
from rs_detectron2.engine.predictor import LazyPredictor
from rs_detectron2.evaluation import optimal_lrp
from rs_detectron2.evaluation.thresholds import (
    NO_GROUND_TRUTH,
    NO_TRUE_POSITIVE,
    count_detection_errors,
    read_thresholds,
    resolve_class_thresholds,
    thresholds_from_olrp,
    write_thresholds,
)
from rs_detectron2.predict import main as predict_main
from rs_detectron2.utils.testing import REPO, run_train_net

TINY_MASK = "configs/quick_schedules/rs_mask_rcnn_tiny.py"
SMALL = "pred_small"
NUM_SMALL = 6
ITERS = 20


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """``--dataset`` spec of a COCO file with the first NUM_SMALL shapes validation images."""
    register_shapes()
    meta = MetadataCatalog.get("rs_shapes_val")
    with open(meta.json_file) as f:
        data = json.load(f)
    images = sorted(data["images"], key=lambda im: im["id"])[:NUM_SMALL]
    for im in images:
        im["file_name"] = os.path.join(meta.image_root, im["file_name"])
    ids = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    root = tmp_path_factory.mktemp("pred_small")
    json_file = str(root / "annotations.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    spec = f"{SMALL}:{json_file}:{root}"
    if SMALL not in DatasetCatalog.list():
        register_user_datasets([spec])
    return spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_set):
    """(weights, thresholds file, eval output folder) of a briefly trained tiny mask model."""
    out = str(tmp_path_factory.mktemp("pred_train") / "out")
    data = [f"dataloader.test.dataset.names={SMALL}"]
    run_train_net(
        TINY_MASK,
        out,
        *data,
        f"train.max_iter={ITERS}",
        f"train.eval_period={ITERS}",
        f"train.checkpointer.period={ITERS}",
        "train.log_period=5",
        "train.seed=0",
        "dataloader.train.total_batch_size=2",
        flags=["--dataset", small_set],
        timeout=1800,
    )
    weights = os.path.join(out, "model_final.pth")
    thresholds = os.path.join(out, "lrp", "thresholds.json")
    eval_dir = os.path.join(out, "eval")
    run_train_net(
        TINY_MASK,
        eval_dir,
        *data,
        f"train.init_checkpoint={weights}",
        flags=["--eval-only", "--lrp-thresholds-out", thresholds, "--dataset", small_set],
        timeout=1800,
    )
    return weights, thresholds, eval_dir


def _small_records():
    return DatasetCatalog.get(SMALL)


def _bgr(record):
    return read_image(record["file_name"], format="BGR")


# ----------------------------------------------------------------------------------------------
# train_net.py --eval-only --lrp-thresholds-out


def test_eval_only_writes_the_lrp_thresholds_file(trained):
    _, path, eval_dir = trained
    with open(path) as f:
        doc = json.load(f)
    with open(os.path.join(eval_dir, "olrp_results.json")) as f:
        olrp = json.load(f)["bbox"]["per_class"]
    assert doc["task"] == "bbox" and doc["tau"] == 0.5
    assert doc["source"]["dataset"] == SMALL and doc["source"]["weights"].endswith("final.pth")
    assert [c["id"] for c in doc["classes"]] == list(range(8))
    assert [c["name"] for c in doc["classes"]] == list(SHAPES_CLASSES)
    assert [c["dataset_id"] for c in doc["classes"]] == list(range(1, 9))
    found = []
    for c in doc["classes"]:
        rec = olrp.get(str(c["dataset_id"]))
        if rec is None:  # no ground truth of the class in the small set
            assert c["threshold"] is None and c["reason"] == NO_GROUND_TRUTH
        elif rec["num_tp"] == 0:
            assert c["threshold"] is None and c["reason"] == NO_TRUE_POSITIVE
        else:
            assert c["threshold"] == rec["threshold"] and c["num_tp"] == rec["num_tp"]
            found.append(c["threshold"])
    assert found, "the trained model found nothing: no threshold to check"
    assert doc["fallback_threshold"] == statistics.median(found)
    read = read_thresholds(path, SHAPES_CLASSES)
    assert read.thresholds == tuple(
        doc["fallback_threshold"] if c["threshold"] is None else c["threshold"]
        for c in doc["classes"]
    )


def test_lrp_thresholds_out_needs_eval_only(tmp_path, capsys):
    argv = ["--config-file", TINY_MASK, "--lrp-thresholds-out", str(tmp_path / "t.json")]
    with pytest.raises(SystemExit) as e:
        prepare_run(default_argument_parser().parse_args(argv))
    assert e.value.code == 2
    assert "--lrp-thresholds-out needs --eval-only" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# LazyPredictor


def test_predictor_equals_the_model_run_by_hand(trained):
    weights = trained[0]
    record = _small_records()[0]
    image = _bgr(record)
    predictor = LazyPredictor(os.path.join(REPO, TINY_MASK), weights, device="cpu")
    got = predictor(image)

    cfg = LazyConfig.load(os.path.join(REPO, TINY_MASK))
    model = instantiate(cfg.model).eval()
    DetectionCheckpointer(model).load(weights)
    resized = T.ResizeShortestEdge(160, 256).get_transform(image).apply_image(image)
    tensor = torch.as_tensor(resized.transpose(2, 0, 1).copy())
    inputs = {"image": tensor, "height": image.shape[0], "width": image.shape[1]}
    with torch.no_grad():
        expected = model([inputs])[0]["instances"]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(got.scores, expected.scores)
    assert torch.equal(got.pred_classes, expected.pred_classes)
    assert torch.equal(got.pred_masks, expected.pred_masks)
    assert predictor.metadata.thing_classes == list(SHAPES_CLASSES)

    # RGB input, a batch of two, and a shipped config by name give the same detections
    rgb = LazyPredictor("quick_schedules/rs_mask_rcnn_tiny.py", weights, image_format="RGB")
    pair = rgb([image[:, :, ::-1].copy()] * 2)
    for inst in pair:
        torch.testing.assert_close(inst.pred_boxes.tensor, got.pred_boxes.tensor)
        torch.testing.assert_close(inst.scores, got.scores)


def test_per_class_thresholds_keep_exactly_the_detections_at_or_above(trained):
    weights, path, _ = trained
    image = _bgr(_small_records()[1])
    config = os.path.join(REPO, TINY_MASK)
    everything = LazyPredictor(config, weights, device="cpu")(image)
    classes = everything.pred_classes.tolist()
    scores = everything.scores.tolist()
    present = sorted(set(classes))
    assert present
    # a class's threshold is one of its own scores: that detection is kept (score >= threshold)
    spec = {}
    for k in present[:2]:
        own = sorted(s for s, c in zip(scores, classes) if c == k)
        spec[k] = own[len(own) // 2]
    spec[SHAPES_CLASSES[present[-1]]] = 0.0  # by name: keep all of that class
    global_thr = 0.99
    filtered = LazyPredictor(
        config, weights, device="cpu", class_thresholds=spec, score_threshold=global_thr
    )(image)
    per_class = resolve_class_thresholds(spec, SHAPES_CLASSES, 8)
    thr = [global_thr if t is None else t for t in per_class]
    keep = [i for i, (s, c) in enumerate(zip(scores, classes)) if s >= thr[c]]
    assert 0 < len(keep) < len(scores)
    assert torch.equal(filtered.pred_boxes.tensor, everything.pred_boxes.tensor[keep])
    assert torch.equal(filtered.scores, everything.scores[keep])

    from_file = LazyPredictor(config, weights, device="cpu", class_thresholds=path)
    assert from_file.thresholds.tolist() == list(read_thresholds(path).thresholds)
    kept = from_file(image)
    thr = read_thresholds(path).thresholds
    expect = [i for i, (s, c) in enumerate(zip(scores, classes)) if s >= thr[c]]
    assert kept.scores.tolist() == [scores[i] for i in expect]


def _rewrite(path, tmp_path, name, edit):
    with open(path) as f:
        doc = json.load(f)
    edit(doc)
    out = str(tmp_path / name)
    with open(out, "w") as f:
        json.dump(doc, f)
    return out


def test_thresholds_file_is_checked_against_the_model_classes(trained, tmp_path):
    path = trained[1]
    with pytest.raises(ValueError, match=r"has thresholds for 8 classes .* the model has 2 "):
        read_thresholds(path, ["disc", "block"])
    renamed = list(SHAPES_CLASSES)
    renamed[2] = "tri"
    with pytest.raises(ValueError, match=r"class 2: 'triangle' in the file, 'tri' in the model"):
        read_thresholds(path, renamed)
    with pytest.raises(ValueError, match="written on dataset pred_small"):
        read_thresholds(path, renamed)

    def drop_class(doc):
        doc["classes"].pop(3)

    def bad_value(doc):
        doc["classes"][0]["threshold"] = "high"

    for name, edit, message in [
        ("missing.json", drop_class, "class ids must be 0..6"),
        ("value.json", bad_value, "has threshold 'high'"),
        ("format.json", lambda d: d.pop("format"), 'no "format"'),
    ]:
        with pytest.raises(ValueError, match=message):
            read_thresholds(_rewrite(path, tmp_path, name, edit))
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_thresholds(str(tmp_path / "text.json"))
    with pytest.raises(FileNotFoundError):
        read_thresholds(str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="no class named 'disk'"):
        resolve_class_thresholds({"disk": 0.5}, SHAPES_CLASSES, 8)
    with pytest.raises(ValueError, match="class index 8 not in 0..7"):
        resolve_class_thresholds({8: 0.5}, SHAPES_CLASSES, 8)


# ----------------------------------------------------------------------------------------------
# python -m rs_detectron2.predict


def _class_of_dataset_id(category_id):
    return MetadataCatalog.get(SMALL).thing_dataset_id_to_contiguous_id[category_id]


def test_predict_cli_writes_pictures_and_coco_results(trained, small_set, tmp_path):
    weights, thresholds, _ = trained
    records = _small_records()[:2]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "rs_detectron2.predict",
        "--config-file",
        os.path.join(REPO, TINY_MASK),
        "--weights",
        weights,
        "--lrp-thresholds",
        thresholds,
        "--gt-dataset",
        SMALL,
        "--dataset",
        small_set,
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--output",
        str(out),
        "--input",
        *[r["file_name"] for r in records],
        str(inputs),
        "dataloader.test.num_workers=0",  # an override after --input
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "skipped 1 files that could not be read" in proc.stderr
    assert "broken.png" in proc.stderr

    for r in records:
        picture = np.asarray(Image.open(out / os.path.basename(r["file_name"])))
        h, w = r["height"], r["width"]
        # prediction and ground truth side by side, each scaled up to 512 px, under a title band
        assert picture.shape[1] == 2 * 512 + 8 and picture.shape[0] > 512
        left, right = picture[-512:, :512], picture[-512:, 520:]
        assert left.std() > 10 and right.std() > 10
        assert not np.array_equal(left, right)  # the ground truth is drawn differently
        assert h == w == 160

    index = json.loads((out / "images.json").read_text())
    assert [s["file_name"] for s in index["skipped"]] == [str(inputs / "broken.png")]
    assert [im["id"] for im in index["images"]] == [r["image_id"] for r in records]
    results = json.loads((out / "detections.json").read_text())
    thr = read_thresholds(thresholds).thresholds
    assert len(results) == sum(im["detections"] for im in index["images"])
    assert results, "no detection kept at the LRP-optimal thresholds"
    with contextlib.redirect_stdout(io.StringIO()):
        # pycocotools accepts them as COCO results
        COCO(MetadataCatalog.get(SMALL).json_file).loadRes([dict(r) for r in results])
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["category_id"] in range(1, 9) and len(r["bbox"]) == 4
        assert r["bbox"][2] > 0 and r["bbox"][3] > 0
        assert r["score"] >= thr[_class_of_dataset_id(r["category_id"])]
        assert set(r["segmentation"]) == {"size", "counts"}


def test_predict_skips_unreadable_files_and_rejects_bad_arguments(trained, tmp_path, capsys):
    weights = trained[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x00" * 10)
    base = ["--config-file", TINY_MASK, "--weights", weights, "--device", "cpu"]
    out = ["--output", str(tmp_path / "out")]
    assert predict_main(base + out + ["--input", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "no input could be read" in err and "broken.jpg" in err

    assert predict_main(base + out + ["--input", str(tmp_path / "*.nothing")]) == 2
    assert "no such file, folder or matching files" in capsys.readouterr().err
    for bad in (["--batch-size", "0"], ["--threshold", "0.5", "--lrp-thresholds", "t.json"]):
        with pytest.raises(SystemExit) as e:
            predict_main(base + out + ["--input", str(broken)] + bad)
        assert e.value.code == 2
    assert predict_main(["--config-file", "no/such.py", "--input", str(broken)]) == 2
    assert "neither a file nor a config shipped" in capsys.readouterr().err


def test_predict_on_a_video(trained, tmp_path):
    cv2 = pytest.importorskip("cv2")
    weights = trained[0]
    frame = _bgr(_small_records()[0])
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, frame.shape[1::-1])
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG here")
    for _ in range(2):
        writer.write(frame)
    writer.release()
    base = ["--config-file", TINY_MASK, "--weights", weights, "--device", "cpu", "--input", video]
    assert predict_main(base + ["--output", str(tmp_path / "f"), "--video-output", "frames"]) == 0
    frames = sorted(os.listdir(tmp_path / "f" / "clip"))
    assert frames == ["frame_000000.png", "frame_000001.png"]
    index = json.loads((tmp_path / "f" / "images.json").read_text())
    assert [im["frame"] for im in index["images"]] == [0, 1]
    assert predict_main(base + ["--output", str(tmp_path / "v")]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 2


# ----------------------------------------------------------------------------------------------
# Thresholds and error counts on hand-built data


def _coco(annotations, num_images=2, cats=(1, 2)):
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "width": 100, "height": 100} for i in range(1, num_images + 1)],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"c{c}"} for c in cats],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _box(ann_id, img, cat, x, y, w=20, h=20):
    return {
        "id": ann_id,
        "image_id": img,
        "category_id": cat,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
    }


def _det(img, cat, x, y, score, w=20, h=20):
    return {"image_id": img, "category_id": cat, "bbox": [x, y, w, h], "score": score}


def test_count_detection_errors_at_global_and_per_class_thresholds():
    # class 1: two objects; a TP at 0.9, an FP at 0.8, a TP at 0.3 (the second object).
    # class 2: one object; an FP at 0.7, the TP at 0.6.
    gt = _coco([_box(1, 1, 1, 10, 10), _box(2, 2, 1, 50, 50), _box(3, 1, 2, 60, 10)])
    dets = [
        _det(1, 1, 11, 10, 0.9),
        _det(1, 1, 70, 70, 0.8),
        _det(2, 1, 50, 51, 0.3),
        _det(2, 2, 10, 60, 0.7),
        _det(1, 2, 60, 11, 0.6),
    ]
    at_half = count_detection_errors(gt, dets, 0.5)
    assert at_half["per_class"] == {1: {"tp": 1, "fp": 1, "fn": 1}, 2: {"tp": 1, "fp": 1, "fn": 0}}
    assert (at_half["tp"], at_half["fp"], at_half["fn"]) == (2, 2, 1)
    per_class = count_detection_errors(gt, dets, {1: 0.3, 2: 0.65})
    assert per_class["per_class"] == {
        1: {"tp": 2, "fp": 1, "fn": 0},
        2: {"tp": 0, "fp": 1, "fn": 1},
    }
    # the threshold is inclusive: a detection exactly at it is kept
    assert count_detection_errors(gt, dets, {1: 0.9, 2: 0.6})["per_class"][1]["tp"] == 1
    with pytest.raises(ValueError, match=r"no threshold for categories \[2\]"):
        count_detection_errors(gt, dets, {1: 0.5})

    # at each class's LRP-optimal threshold the counts are oLRP's
    for cat in (1, 2):
        mine = [d for d in dets if d["category_id"] == cat]
        scores = [d["score"] for d in mine]
        is_tp = [d["score"] in (0.9, 0.3, 0.6) for d in mine]
        ious = [400 / 440 if t else 0.0 for t in is_tp]  # 1-pixel shift of a 20 px box
        rec = optimal_lrp(scores, is_tp, ious, num_gt=2 if cat == 1 else 1)
        got = count_detection_errors(gt, dets, rec["threshold"])["per_class"][cat]
        assert (got["tp"], got["fp"], got["fn"]) == (rec["num_tp"], rec["num_fp"], rec["num_fn"])


def test_thresholds_document_choices_for_classes_without_evidence(tmp_path):
    rec = dict(oLRP=0.4, num_tp=3, num_fp=1, num_fn=1, num_gt=4)
    per_class = {
        10: {**rec, "threshold": 0.3},
        20: {**rec, "threshold": 0.5},
        30: {**rec, "threshold": 0.8, "num_tp": 0, "oLRP": 1.0},  # only false positives
    }
    doc = thresholds_from_olrp(
        per_class, ["a", "b", "c", "d"], dataset_ids=[10, 20, 30, 40], source={"dataset": "x"}
    )
    assert [c["threshold"] for c in doc["classes"]] == [0.3, 0.5, None, None]
    assert [c.get("reason") for c in doc["classes"]] == [
        None,
        None,
        NO_TRUE_POSITIVE,
        NO_GROUND_TRUTH,
    ]
    assert doc["fallback_threshold"] == 0.4  # median of 0.3 and 0.5
    path = write_thresholds(str(tmp_path / "sub" / "t.json"), doc)
    read = read_thresholds(path, ["a", "b", "c", "d"])
    assert read.thresholds == (0.3, 0.5, 0.4, 0.4) and read.source == {"dataset": "x"}
    with pytest.raises(ValueError, match="no true positive of any class"):
        thresholds_from_olrp({30: per_class[30]}, ["c"], dataset_ids=[30])
