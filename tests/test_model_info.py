"""A trained model knows its own classes: what a run saves with its weights (class names, the
dataset's category ids, the class count, input format, pixel statistics, test resize), and how
``--eval-only``, ``predict``, ``export``, ``LazyPredictor`` and ``ExportedModel`` use it.

One tiny RS Mask R-CNN is trained for a few iterations (a module fixture) on a 4-class COCO file
whose category ids are 7, 12, 30 and 31 and whose names are not the shapes' (so that a picture or
a results file labelled from the shapes dataset is caught), built from the first shapes images.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image

from rs_detectron2 import export
from rs_detectron2.data import register_shapes, register_user_datasets
from rs_detectron2.deploy import ExportedModel, compare_instances
from rs_detectron2.engine import AtomicCheckpointer, read_model_info
from rs_detectron2.engine.model_info import (
    ModelInfoMismatch,
    adopt_model_info,
    augmentations_from_info,
    describe_augmentations,
)
from rs_detectron2.engine.predictor import LazyPredictor, load_lazy_config
from rs_detectron2.evaluation.thresholds import THRESHOLDS_FORMAT, THRESHOLDS_VERSION
from rs_detectron2.predict import main as predict_main
from rs_detectron2.utils.testing import REPO, run_train_net

TINY_MASK = "configs/quick_schedules/rs_mask_rcnn_tiny.py"
TINY_FASTER = "configs/quick_schedules/rs_faster_rcnn_tiny.py"
BOARD = "board4"
IDS = [7, 12, 30, 31]
NAMES = ["chip", "resistor", "capacitor", "diode"]  # none is a shapes class name
SHAPE_IDS = [1, 2, 3, 4]  # the shapes' category ids kept, in this order
ITERS = 6


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """``--dataset`` spec of a 4-class COCO file (ids 7, 12, 30, 31) over 6 shapes images."""
    register_shapes()
    meta = MetadataCatalog.get("rs_shapes_val")
    with open(meta.json_file) as f:
        data = json.load(f)
    images = sorted(data["images"], key=lambda im: im["id"])[:6]
    for im in images:
        im["file_name"] = os.path.join(meta.image_root, im["file_name"])
    ids = {im["id"] for im in images}
    new_id = dict(zip(SHAPE_IDS, IDS))
    anns = [a for a in data["annotations"] if a["image_id"] in ids and a["category_id"] in new_id]
    for a in anns:
        a["category_id"] = new_id[a["category_id"]]
    # the categories listed in another order than their ids: the class order is by id
    cats = [{"id": i, "name": n} for i, n in reversed(list(zip(IDS, NAMES)))]
    root = tmp_path_factory.mktemp("board")
    json_file = str(root / "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    spec = f"{BOARD}:{json_file}:{root}"
    if BOARD not in DatasetCatalog.list():
        register_user_datasets([spec])
    return spec


@pytest.fixture(scope="module")
def run(tmp_path_factory, board):
    """The output folder of a short training on ``board`` (num_classes=4 by override)."""
    out = str(tmp_path_factory.mktemp("board_run") / "out")
    run_train_net(
        TINY_MASK,
        out,
        f"dataloader.train.dataset.names={BOARD}",
        f"dataloader.test.dataset.names={BOARD}",
        "model.roi_heads.num_classes=4",
        f"train.max_iter={ITERS}",
        "train.eval_period=0",
        f"train.checkpointer.period={ITERS}",
        "dataloader.train.total_batch_size=2",
        "train.seed=0",
        flags=["--dataset", board],
        timeout=900,
    )
    return out


def _weights(run):
    return os.path.join(run, "model_final.pth")


def _image():
    record = DatasetCatalog.get(BOARD)[0]
    return record, read_image(record["file_name"], format="BGR")


def test_a_run_saves_what_its_model_was_trained_for(run):
    info = read_model_info(_weights(run))
    assert info["thing_classes"] == NAMES
    assert info["category_ids"] == IDS
    assert info["num_classes"] == 4 and info["num_classes_key"] == "model.roi_heads.num_classes"
    assert info["input_format"] == "BGR" and info["dataset"] == BOARD
    assert len(info["pixel_mean"]) == 3 and len(info["pixel_std"]) == 3
    augs = augmentations_from_info(info["test_augmentations"])
    assert [type(a).__name__ for a in augs] == ["ResizeShortestEdge"]
    assert info["config_file"].endswith("rs_mask_rcnn_tiny.py")


def test_predictor_takes_classes_count_and_resize_from_the_weights(run):
    # no num_classes override: the config says 8, the weights 4
    predictor = LazyPredictor(TINY_MASK, _weights(run), device="cpu", score_threshold=0.0)
    assert predictor.cfg.model.roi_heads.num_classes == 4
    assert predictor.metadata.thing_classes == NAMES
    assert predictor.metadata.thing_dataset_id_to_contiguous_id == dict(zip(IDS, range(4)))
    assert predictor.warnings == []
    with pytest.raises(ModelInfoMismatch, match="model.roi_heads.num_classes=8 disagrees"):
        LazyPredictor(
            TINY_MASK, _weights(run), device="cpu", overrides=["model.roi_heads.num_classes=8"]
        )
    # a dataset with other classes cannot be drawn beside the model's detections
    with pytest.raises(ModelInfoMismatch, match="rs_shapes_val has 8 classes"):
        LazyPredictor(
            TINY_MASK, _weights(run), device="cpu", metadata=MetadataCatalog.get("rs_shapes_val")
        )


def test_predict_labels_with_the_weights_classes_and_ids(run, tmp_path, capsys):
    out = str(tmp_path / "pred")
    record, _ = _image()
    status = predict_main(
        ["--config-file", TINY_MASK, "--weights", _weights(run), "--input", record["file_name"]]
        + ["--output", out, "--threshold", "0", "--device", "cpu"]
    )
    assert status == 0, capsys.readouterr().err
    index = json.load(open(os.path.join(out, "images.json")))
    assert index["categories"] == [{"id": i, "name": n} for i, n in zip(IDS, NAMES)]
    detections = json.load(open(os.path.join(out, "detections.json")))
    assert detections and {d["category_id"] for d in detections} <= set(IDS)

    # --gt-dataset with other classes: stops, naming both sides
    status = predict_main(
        ["--config-file", TINY_MASK, "--weights", _weights(run), "--gt-dataset", "rs_shapes_val"]
        + ["--output", out, "--device", "cpu", "--limit", "1"]
    )
    err = capsys.readouterr().err
    assert status == 2 and "trained on 4 classes (chip" in err and "rs_shapes_val has 8" in err


def test_predict_with_the_runs_config_yaml_in_a_new_process(run, tmp_path):
    # the dataset of config.yaml is not registered in a new process: the names come from the weights
    out = str(tmp_path / "pred")
    record, _ = _image()
    cmd = [sys.executable, "-m", "rs_detectron2.predict", "--config-file"]
    cmd += [os.path.join(run, "config.yaml"), "--weights", _weights(run)]
    cmd += ["--input", record["file_name"], "--output", out, "--threshold", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = json.load(open(os.path.join(out, "images.json")))
    assert [c["name"] for c in index["categories"]] == NAMES
    assert "predict: warning" not in proc.stderr


def test_weights_without_model_info_are_labelled_by_index_with_a_warning(run, tmp_path):
    checkpoint = torch.load(_weights(run), map_location="cpu", weights_only=True)
    del checkpoint["model_info"]
    bare = str(tmp_path / "bare.pth")
    torch.save(checkpoint, bare)
    predictor = LazyPredictor(
        TINY_MASK, bare, device="cpu", overrides=["model.roi_heads.num_classes=4"]
    )
    # the config's test dataset has 8 classes: its names would mislabel a 4-class model
    assert predictor.metadata.get("thing_classes", None) is None
    assert any("labelled by class index" in w for w in predictor.warnings)


def test_lrp_thresholds_of_another_model_name_the_models_classes(run, tmp_path, capsys):
    doc = {
        "format": THRESHOLDS_FORMAT,
        "version": THRESHOLDS_VERSION,
        "fallback_threshold": 0.5,
        "classes": [{"id": k, "name": f"c{k}", "threshold": 0.5} for k in range(8)],
    }
    path = str(tmp_path / "thresholds.json")
    json.dump(doc, open(path, "w"))
    record, _ = _image()
    status = predict_main(
        ["--config-file", TINY_MASK, "--weights", _weights(run), "--input", record["file_name"]]
        + ["--output", str(tmp_path), "--lrp-thresholds", path, "--device", "cpu"]
    )
    err = capsys.readouterr().err
    assert status == 2 and "the model has 4 (chip, resistor" in err, err


def test_export_uses_the_weights_and_applies_the_test_resize(run, tmp_path, capsys):
    record, image = _image()
    # a photo of another size than the test resize gives (the shapes images are already 160 x 160)
    image = np.ascontiguousarray(np.asarray(Image.fromarray(image).resize((150, 120))))
    out = str(tmp_path / "export")
    status = export.main(
        ["--config-file", TINY_MASK, "--weights", _weights(run), "--output", out]
        + ["--sample-image", record["file_name"]]
    )
    assert status == 0, capsys.readouterr().err
    info = json.load(open(os.path.join(out, "export.json")))
    assert info["thing_classes"] == NAMES and info["category_ids"] == IDS
    assert info["num_classes"] == 4

    exported = ExportedModel(out)
    assert exported.metadata.thing_classes == NAMES
    predictor = LazyPredictor(TINY_MASK, _weights(run), device="cpu")
    expected = predictor(image)
    actual = exported.predict(image)
    assert actual.image_size == image.shape[:2] and len(expected) > 0
    compare_instances(expected, actual)

    # an image that was not resized is refused, not run at the wrong scale
    raw = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    assert exported.resized_size(*image.shape[:2]) != tuple(image.shape[:2])
    with pytest.raises(ValueError, match="test resize"):
        exported([{"image": raw}])
    resized = exported.preprocess(image)
    compare_instances(expected, exported([resized])[0]["instances"])


def test_export_refuses_weights_that_do_not_fit(run, tmp_path, capsys):
    record, _ = _image()
    args = ["--output", str(tmp_path / "e"), "--sample-image", record["file_name"]]
    # Mask R-CNN weights into a Faster R-CNN config: the mask head's weights have no place
    status = export.main(["--config-file", TINY_FASTER, "--weights", _weights(run)] + args)
    err = capsys.readouterr().err
    assert status == 1 and "not in the model" in err and "rs_mask_rcnn_tiny.py" in err
    # weights without model_info into a config of another class count: reshaped layers
    checkpoint = torch.load(_weights(run), map_location="cpu", weights_only=True)
    del checkpoint["model_info"]
    bare = str(tmp_path / "bare.pth")
    torch.save(checkpoint, bare)
    status = export.main(["--config-file", TINY_MASK, "--weights", bare] + args)
    err = capsys.readouterr().err
    assert status == 1 and "with another shape" in err
    assert not os.path.exists(str(tmp_path / "e" / "model.ts"))


def test_eval_only_uses_the_weights_and_checks_the_test_classes(run, board, tmp_path):
    weights = f"train.init_checkpoint={_weights(run)}"
    proc = run_train_net(
        TINY_MASK,
        str(tmp_path / "eval"),
        weights,
        f"dataloader.test.dataset.names={BOARD}",
        flags=["--eval-only", "--dataset", board],
    )
    assert "bbox" in proc.stdout + proc.stderr
    proc = run_train_net(
        TINY_MASK, str(tmp_path / "eval8"), weights, flags=["--eval-only"], check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "rs_shapes_val has 8 classes" in proc.stderr


def test_augmentation_descriptions_round_trip_and_refuse_foreign_types():
    from detectron2.data import transforms as T

    augs = [T.ResizeShortestEdge(160, 333), T.Resize((55, 66))]
    back = augmentations_from_info(json.loads(json.dumps(describe_augmentations(augs))))
    image = np.zeros((100, 140, 3), np.uint8)
    for a, b in zip(augs, back):
        assert a.get_transform(image).apply_image(image).shape == (
            b.get_transform(image).apply_image(image).shape
        )
    with pytest.raises(ValueError, match="not a Detectron2 transform"):
        augmentations_from_info([{"type": "os.system", "command": "true"}])


def test_checkpoints_carry_model_info_and_adoption_sets_linked_keys(tmp_path):
    cfg = load_lazy_config(TINY_MASK)
    info = {"num_classes": 3, "num_classes_key": "model.roi_heads.num_classes"}
    adopted = adopt_model_info(cfg, info, ["train.max_iter=5"])
    assert adopted.model.roi_heads.box_predictor.num_classes == 3
    assert adopted.model.roi_heads.mask_head.num_classes == 3
    # the class count of another kind of model
    with pytest.raises(ModelInfoMismatch, match="different kinds"):
        adopt_model_info(
            load_lazy_config(TINY_MASK), {**info, "num_classes_key": "model.num_classes"}
        )

    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.model_info = {"thing_classes": ["a", "b"]}
    checkpointer.save("m")
    assert read_model_info(str(tmp_path / "m.pth")) == {"thing_classes": ["a", "b"]}


def test_predict_with_weights_of_another_model_names_its_flag(run, tmp_path, capsys):
    record, _ = _image()
    status = predict_main(
        ["--config-file", TINY_FASTER, "--weights", _weights(run), "--input", record["file_name"]]
        + ["--output", str(tmp_path / "p"), "--device", "cpu"]
    )
    err = capsys.readouterr().err
    assert status == 1 and "not in the model" in err and "rs_mask_rcnn_tiny.py" in err
    assert "--allow-partial-weights" in err and "allow_partial_weights=True" not in err


@pytest.mark.parametrize(
    "config, overrides",
    [
        (TINY_FASTER, ["model.roi_heads.num_classes=4"]),  # another architecture
        (TINY_MASK, ["model.roi_heads.num_classes=4", "optimizer.weight_decay=0.0"]),  # same: ok
    ],
)
def test_resume_with_another_config_says_which_config_wrote_the_run(
    run, board, tmp_path, config, overrides
):
    out = tmp_path / "out"  # a copy: the module's run stays as it is
    out.mkdir()
    for name in ("model_final.pth", "last_checkpoint"):
        (out / name).write_bytes(open(os.path.join(run, name), "rb").read())
    proc = run_train_net(
        config,
        str(out),
        f"dataloader.train.dataset.names={BOARD}",
        f"dataloader.test.dataset.names={BOARD}",
        f"train.max_iter={ITERS + 1}",
        "train.eval_period=0",
        "dataloader.train.total_batch_size=2",
        *overrides,
        flags=["--resume", "--dataset", board, "--check-images", "none"],
        check=False,
        timeout=600,
    )
    if config == TINY_MASK:  # the config that wrote the run resumes it
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert f"--resume: cannot resume from {out}/model_final.pth, written by" in err
    assert "rs_mask_rcnn_tiny.py" in err and "keys not in the model" in err
    assert "train.init_checkpoint=" in err and "Traceback" not in err
