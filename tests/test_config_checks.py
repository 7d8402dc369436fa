"""What a config needs of its data, checked before iteration 0: box-only data with a mask model
(the data check and train_net's start-up checks name the box-only config to use), and the class
count set by one key (every ``num_classes`` key of a model agrees, or the command stops)."""

import json
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog

from rs_detectron2.data import (
    box_only_config,
    class_count_disagreement,
    class_count_key,
    class_count_keys,
    model_trains_masks,
)
from rs_detectron2.data.check import main as check_main
from rs_detectron2.engine.startup_checks import ConfigError, load_checked_config
from rs_detectron2.model_zoo import get_config_file, list_configs
from rs_detectron2.utils.testing import REPO, run_train_net

QS = "configs/quick_schedules"
SIZE = 48


def _write_boxes(root, with_masks=False):
    """A 2-class COCO json (ids 3 and 9) of three images, one box each; polygons only if
    ``with_masks``."""
    os.makedirs(root, exist_ok=True)
    images, anns = [], []
    for i in range(3):
        name = f"{i}.png"
        Image.fromarray(np.full((SIZE, SIZE, 3), 30 + 60 * i, np.uint8)).save(f"{root}/{name}")
        images.append({"id": i + 1, "file_name": name, "height": SIZE, "width": SIZE})
        ann = {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": (3, 9)[i % 2],
            "bbox": [8.0, 8.0, 20.0, 16.0],
            "area": 320.0,
            "iscrowd": 0,
        }
        if with_masks:
            ann["segmentation"] = [[8.0, 8.0, 28.0, 8.0, 28.0, 24.0, 8.0, 24.0]]
        anns.append(ann)
    cats = [{"id": 3, "name": "chip"}, {"id": 9, "name": "pin"}]
    json_file = os.path.join(root, "boxes.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return json_file


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("box_only"))
    return root, _write_boxes(root)


@pytest.fixture
def check(boxes, capsys):
    """Run ``data.check --config-file CFG`` with the box-only set as the training set."""
    root, json_file = boxes
    names = []

    def _check(config, *overrides):
        name = f"boxes_{uuid.uuid4().hex[:6]}"
        names.append(name)
        argv = ["--config-file", os.path.join(REPO, config), "--no-progress", "--no-images"]
        argv += ["--dataset", f"{name}:{json_file}:{root}"]
        argv += [f"dataloader.train.dataset.names={name}", f"dataloader.test.dataset.names={name}"]
        rc = check_main(argv + list(overrides))
        return rc, capsys.readouterr().out

    yield _check
    for n in names:
        if n in DatasetCatalog.list():
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


# --- box-only data with a mask model ---------------------------------------------------------


def _two_classes(config):
    """The override that gives ``config``'s model the box-only set's 2 classes."""
    return f"{class_count_key(LazyConfig.load(os.path.join(REPO, config)))[0]}=2"


@pytest.mark.parametrize(
    "config, box_config",
    [
        ("rs_mask_rcnn_tiny.py", "rs_faster_rcnn_tiny.py"),
        ("mask_rcnn_tiny.py", "faster_rcnn_tiny.py"),
        ("rs_solov2_tiny.py", "rs_atss_tiny.py"),
        ("rs_yolact_tiny.py", "rs_atss_tiny.py"),
        ("yolact_tiny.py", "faster_rcnn_tiny.py"),
    ],
)
def test_data_check_refuses_box_only_data_for_a_mask_model(check, config, box_config):
    rc, out = check(f"{QS}/{config}", _two_classes(f"{QS}/{config}"))
    assert rc == 1, out
    assert "has boxes only (none of its 3 annotations has a 'segmentation')" in out
    assert f"train the box-only config {QS}/{box_config} instead" in out
    # the config it names takes the same data without an error
    rc, out = check(f"{QS}/{box_config}", _two_classes(f"{QS}/{box_config}"))
    assert rc == 0, out
    assert "boxes only" not in out


def test_data_check_accepts_the_same_boxes_with_masks(tmp_path, capsys):
    json_file = _write_boxes(str(tmp_path), with_masks=True)
    name = f"masked_{uuid.uuid4().hex[:6]}"
    try:
        rc = check_main(
            [
                "--config-file",
                os.path.join(REPO, QS, "rs_mask_rcnn_tiny.py"),
                "--no-progress",
                "--dataset",
                f"{name}:{json_file}:{tmp_path}",
                f"dataloader.train.dataset.names={name}",
                "model.roi_heads.num_classes=2",
            ]
        )
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "boxes only" not in out


def test_train_net_stops_before_iteration_0_on_box_only_data(tmp_path, boxes):
    root, json_file = boxes
    proc = run_train_net(
        f"{QS}/rs_mask_rcnn_tiny.py",
        str(tmp_path / "out"),
        "dataloader.train.dataset.names=mine_boxes",
        "model.roi_heads.num_classes=2",
        flags=["--dataset", f"mine_boxes:{json_file}:{root}"],
        check=False,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "mine_boxes has boxes only" in proc.stderr
    assert f"{QS}/rs_faster_rcnn_tiny.py" in proc.stderr
    assert "gt_masks" in proc.stderr and "Model:" not in proc.stdout + proc.stderr


def test_box_only_config_of_every_shipped_mask_config():
    checked = 0
    for config in list_configs():
        path = get_config_file(config)
        cfg = LazyConfig.load(path)
        if not model_trains_masks(cfg):
            continue
        box = box_only_config(path)
        assert box is not None, config
        assert not model_trains_masks(LazyConfig.load(box)), (config, box)
        assert ("rs_" in os.path.basename(box)) == ("rs_" in os.path.basename(config))
        checked += 1
    assert checked >= 10
    # the exact twin wins over a near name; a folder without an InstanceSegmentation twin falls
    # back to the Detection folder
    tv = box_only_config(
        get_config_file("COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_tv.py")
    )
    assert tv.endswith("COCO-Detection/rs_faster_rcnn_R_50_FPN_1x_tv.py")
    lvis = get_config_file("LVISv1-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_rfs.py")
    assert box_only_config(lvis).endswith("COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py")


def test_box_only_config_of_a_user_folder(tmp_path):
    for name in ("my_rs_mask_rcnn_big.py", "my_rs_faster_rcnn_big.py", "my_rs_faster_rcnn.py"):
        (tmp_path / name).write_text("")
    assert box_only_config(str(tmp_path / "my_rs_mask_rcnn_big.py")) == str(
        tmp_path / "my_rs_faster_rcnn_big.py"
    )
    assert box_only_config(str(tmp_path / "detector.py")) is None  # no family in the name


def test_which_models_train_on_masks():
    expected = {
        "rs_mask_rcnn_tiny.py": True,
        "rs_solov2_tiny.py": True,
        "yolact_tiny.py": True,
        "rs_faster_rcnn_tiny.py": False,
        "rs_cascade_rcnn_tiny.py": False,
        "rs_atss_tiny.py": False,
    }
    for config, masks in expected.items():
        assert model_trains_masks(LazyConfig.load(os.path.join(REPO, QS, config))) is masks


# --- one class count --------------------------------------------------------------------------


def test_every_shipped_config_has_one_class_count():
    for config in list_configs():
        cfg = LazyConfig.load(get_config_file(config))
        key, value = class_count_key(cfg)
        keys = class_count_keys(cfg)
        assert key in keys and len(keys) >= 2, (config, keys)
        assert set(keys.values()) == {value}, (config, keys)
        assert class_count_disagreement(cfg) is None


@pytest.mark.parametrize(
    "config, override, expected",
    [
        (
            "rs_atss_tiny.py",
            "model.head.num_classes=3",
            "model.num_classes=8, model.head.num_classes=3. A model predicts one set of classes: "
            "set it with model.num_classes=N alone",
        ),
        (
            "rs_faster_rcnn_tiny.py",
            "model.roi_heads.box_predictor.num_classes=4",
            "model.roi_heads.num_classes=8, model.roi_heads.box_predictor.num_classes=4",
        ),
        (
            "rs_cascade_rcnn_tiny.py",
            "model.roi_heads.box_predictors.1.num_classes=2",
            "model.roi_heads.box_predictors.1.num_classes=2",
        ),
        (
            "rs_mask_rcnn_tiny.py",
            "model.roi_heads.mask_head.num_classes=5",
            "model.roi_heads.mask_head.num_classes=5",
        ),
    ],
)
def test_class_count_keys_that_disagree_are_refused(config, override, expected):
    with pytest.raises(ConfigError, match="class counts disagree") as e:
        load_checked_config(os.path.join(REPO, QS, config), [override])
    assert expected in str(e.value)


def test_class_count_set_by_its_key_or_class_agnostic_masks_pass():
    for config, overrides in [
        ("rs_atss_tiny.py", ["model.num_classes=3"]),
        ("rs_atss_tiny.py", ["model.num_classes=3", "model.head.num_classes=3"]),
        ("rs_cascade_rcnn_tiny.py", ["model.roi_heads.num_classes=2"]),
        ("rs_mask_rcnn_tiny.py", ["model.roi_heads.mask_head.num_classes=1"]),
    ]:
        cfg = load_checked_config(os.path.join(REPO, QS, config), overrides)
        assert class_count_disagreement(cfg) is None


def test_a_class_count_key_the_model_lacks_names_the_one_it_has():
    with pytest.raises(ConfigError) as e:
        load_checked_config(
            os.path.join(REPO, QS, "rs_atss_tiny.py"), ["model.roi_heads.num_classes=3"]
        )
    message = str(e.value)
    assert "unknown config key 'model.roi_heads.num_classes'" in message
    assert "this model's class count is model.num_classes" in message
    assert "model.head.num_classes" not in message


def test_data_check_and_train_net_refuse_disagreeing_class_counts(check, tmp_path):
    rc, out = check(f"{QS}/rs_faster_rcnn_tiny.py", "model.roi_heads.box_predictor.num_classes=2")
    assert rc == 1, out
    assert "class counts disagree: model.roi_heads.num_classes=8" in out
    proc = run_train_net(
        f"{QS}/rs_faster_rcnn_tiny.py",
        str(tmp_path / "out"),
        "model.roi_heads.box_predictor.num_classes=4",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.roi_heads.box_predictor.num_classes=4" in proc.stderr
    assert "set it with model.roi_heads.num_classes=N alone" in proc.stderr
    assert not os.path.exists(tmp_path / "out")
