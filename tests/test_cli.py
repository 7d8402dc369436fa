"""train_net.py's start-up checks, run as a user runs them (a subprocess) on a small COCO-format
dataset written here: every mistake stops with a message that says what to change and an exit
status (2: command line or config, 1: data or weights), before any model is built where possible."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from rs_detectron2.utils.testing import REPO, read_metrics, run_train_net

TINY_FASTER = "configs/quick_schedules/rs_faster_rcnn_tiny.py"
TINY_MASK = "configs/quick_schedules/rs_mask_rcnn_tiny.py"
TINY_RETINANET = "configs/quick_schedules/rs_retinanet_tiny.py"
CLASSES = ["disc", "block"]
SIZE = 64


def _write_dataset(root, masks="polygon", num_images=4):
    """A COCO json with two classes and ``num_images`` PNGs of SIZE x SIZE, one square of each
    class per image; ``masks`` is "polygon" or "rle" (non-crowd RLE segmentations)."""
    os.makedirs(root, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img = np.full((SIZE, SIZE, 3), 40, dtype=np.uint8)
        for k in range(2):
            x0, y0, side = 6 + 28 * k, 8 + 3 * i, 20
            img[y0 : y0 + side, x0 : x0 + side] = (200, 60 + 100 * k, 30)
            if masks == "rle":
                m = np.zeros((SIZE, SIZE), dtype=np.uint8)
                m[y0 : y0 + side, x0 : x0 + side] = 1
                rle = mask_utils.encode(np.asfortranarray(m))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            else:
                x1, y1 = x0 + side, y0 + side
                segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": k + 1,
                    "bbox": [x0, y0, side, side],
                    "area": side * side,
                    "iscrowd": 0,
                    "segmentation": segmentation,
                }
            )
        name = f"{i:03d}.png"
        Image.fromarray(img).save(os.path.join(root, name))
        images.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
    }
    json_file = os.path.join(root, "annotations.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    return json_file


@pytest.fixture(scope="module")
def polygons(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli_polygons"))
    return f"mine:{_write_dataset(root)}:{root}"


@pytest.fixture(scope="module")
def rle(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli_rle"))
    return f"mine_rle:{_write_dataset(root, masks='rle')}:{root}"


def _fails(config, out, *overrides, flags=(), status):
    proc = run_train_net(config, out, *overrides, flags=flags, check=False, timeout=300)
    assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-4000:]
    # stopped before the model was built (train_net logs it first thing when it is)
    assert "Model:" not in proc.stdout + proc.stderr
    return proc.stderr


def test_unknown_override_key_names_the_nearest_key(tmp_path):
    err = _fails(TINY_FASTER, str(tmp_path / "out"), "train.max_itr=2", status=2)
    assert "unknown config key 'train.max_itr'" in err
    assert "did you mean train.max_iter?" in err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_iter=two", "train.max_iter expects an int (now 300), got a str: 'two'"),
        ("optimizer.lr=[1,2]", "optimizer.lr expects a float (now 0.005), got a list"),
    ],
)
def test_override_value_of_the_wrong_type(tmp_path, override, expected):
    err = _fails(TINY_FASTER, str(tmp_path / "out"), override, status=2)
    assert expected in err


@pytest.mark.parametrize(
    "config, key",
    [(TINY_FASTER, "model.roi_heads.num_classes"), (TINY_RETINANET, "model.num_classes")],
)
def test_class_count_mismatch_gives_the_override(tmp_path, polygons, config, key):
    err = _fails(
        config,
        str(tmp_path / "out"),
        "dataloader.train.dataset.names=mine",
        flags=["--dataset", polygons],
        status=2,
    )
    assert "dataset mine has 2 classes (disc, block) but the model predicts 8" in err
    assert f"Add the override {key}=2" in err


def test_unregistered_dataset_points_to_the_flag(tmp_path):
    err = _fails(
        TINY_FASTER,
        str(tmp_path / "out"),
        "dataloader.train.dataset.names=rs_shapes_trian",
        status=2,
    )
    assert "dataset 'rs_shapes_trian' is not registered" in err
    assert "--dataset rs_shapes_trian:JSON:IMAGE_ROOT" in err and "rs_shapes_train?" in err


@pytest.mark.parametrize("weights", ["", "missing.pth"])
def test_eval_only_refuses_to_run_without_weights(tmp_path, weights):
    err = _fails(
        TINY_FASTER,
        str(tmp_path / "out"),
        f"train.init_checkpoint={tmp_path / weights if weights else ''}",
        flags=["--eval-only"],
        status=2,
    )
    expected = "does not exist" if weights else "--eval-only needs weights to evaluate"
    assert expected in err


def test_eval_only_refuses_weights_of_another_architecture(tmp_path, polygons):
    from detectron2.config import LazyConfig, instantiate

    other = instantiate(LazyConfig.load(os.path.join(REPO, TINY_RETINANET)).model)
    weights = str(tmp_path / "retinanet.pth")
    torch.save({"model": other.state_dict()}, weights)
    common = [
        f"train.init_checkpoint={weights}",
        "dataloader.test.dataset.names=mine",
        "model.roi_heads.num_classes=2",
    ]
    flags = ["--eval-only", "--dataset", polygons]
    proc = run_train_net(TINY_FASTER, str(tmp_path / "out"), *common, flags=flags, check=False)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "do not match the model of the config" in proc.stderr
    assert "keys missing from the checkpoint: " in proc.stderr
    assert "keys not in the model: " in proc.stderr and "--allow-partial-weights" in proc.stderr
    # told otherwise, it evaluates (the 4 images of the small set)
    proc = run_train_net(
        TINY_FASTER, str(tmp_path / "out"), *common, flags=flags + ["--allow-partial-weights"]
    )
    assert "Evaluation results for bbox" in proc.stdout + proc.stderr


def _short_run(dataset, *overrides):
    """One training iteration on ``dataset``, evaluated (at the end, as always) on it too."""
    return [
        f"dataloader.train.dataset.names={dataset}",
        f"dataloader.test.dataset.names={dataset}",
        "train.max_iter=1",
        "train.eval_period=0",
        "train.log_period=1",
        "train.checkpointer.period=1",
        "dataloader.train.total_batch_size=2",
        *overrides,
    ]


def test_rle_masks_switch_the_mapper_to_bitmasks(tmp_path, rle):
    out = str(tmp_path / "out")
    proc = run_train_net(
        TINY_MASK,
        out,
        *_short_run("mine_rle", "model.roi_heads.num_classes=2"),
        flags=["--dataset", rle],
    )
    assert "RLE masks" in proc.stderr
    assert "dataloader.train.mapper.instance_mask_format=bitmask" in proc.stderr
    with open(os.path.join(out, "config.yaml")) as f:
        assert "instance_mask_format: bitmask" in f.read()
    assert [r["iteration"] for r in read_metrics(out) if "total_loss" in r] == [0]


def test_overwrite_moves_the_earlier_run_aside(tmp_path, polygons):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {
        "model_0000099.pth": b"old weights",
        "last_checkpoint": b"model_0000099.pth",
        "metrics.json": b'{"iteration": 99, "total_loss": 1.0}\n',
        "events.out.tfevents.1.host": b"old events",
        "notes.txt": b"the user's own notes",
    }
    for name, content in earlier.items():
        (out / name).write_bytes(content)
    # without --overwrite (or --resume) the earlier run is refused
    err = _fails(TINY_FASTER, str(out), *_short_run("rs_shapes_train"), status=2)
    assert "already holds checkpoints" in err
    proc = run_train_net(
        TINY_FASTER,
        str(out),
        *_short_run("mine", "model.roi_heads.num_classes=2"),
        flags=["--overwrite", "--dataset", polygons],
    )
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
    assert len(moved) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert f"is now in {moved[0]}" in proc.stdout
    for name, content in earlier.items():  # nothing of the earlier run is lost
        assert (moved[0] / name).read_bytes() == content
    # one folder, one run: only the new run's files
    names = set(os.listdir(out))
    assert "model_0000099.pth" not in names and "notes.txt" not in names
    assert not any(n.startswith("events.out.tfevents.1.host") for n in names)
    assert [r["iteration"] for r in read_metrics(str(out)) if "total_loss" in r] == [0]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


@pytest.mark.parametrize(
    "config, overrides",
    [
        (
            TINY_MASK,
            [
                "dataloader.train.mapper.instance_mask_format=bitmask",  # a DatasetMapper argument
                "dataloader.train.dataset.names=[a,b]",  # a list where a name was
                "dataloader.train.seed=3",  # passed on to Detectron2's loader through **kwargs
                "optimizer.weight_decay=0",  # an int where a float is
                "train.init_checkpoint=/tmp/x.pth",
                "model.roi_heads.num_classes=2",
                "train.device=cpu",
            ],
        ),
        (TINY_RETINANET, ["model.num_classes=3", "model.ranking_loss.pool=global"]),
        ("configs/quick_schedules/rs_mask_rcnn_lvis_tiny.py", ["dataloader.train.seed=null"]),
    ],
)
def test_valid_overrides_pass_the_checks(config, overrides):
    from detectron2.config import LazyConfig

    from rs_detectron2.engine.startup_checks import check_overrides

    check_overrides(LazyConfig.load(os.path.join(REPO, config)), overrides)


def test_override_near_a_sibling_of_a_kwargs_callable_is_refused():
    from detectron2.config import LazyConfig

    from rs_detectron2.engine.startup_checks import ConfigError, check_overrides

    cfg = LazyConfig.load(os.path.join(REPO, TINY_FASTER))
    with pytest.raises(ConfigError, match="did you mean dataloader.train.num_workers"):
        check_overrides(cfg, ["dataloader.train.num_worker=2"])
    with pytest.raises(ConfigError, match="expects an int .* not None"):
        check_overrides(cfg, ["train.max_iter=null"])


def test_options_may_follow_the_overrides():
    from rs_detectron2.engine import default_argument_parser

    argv = ["--config-file", "c.py", "a.b=1", "--dataset", "x:y.json:z", "c.d=2", "--resume"]
    args = default_argument_parser().parse_args(argv)
    assert args.opts == ["a.b=1", "c.d=2"] and args.dataset == ["x:y.json:z"] and args.resume


def test_help_shows_lazyconfig_examples_and_no_import_notices():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "train_net.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "--eval-only train.init_checkpoint=OUTPUT_DIR/model_final.pth" in proc.stdout
    assert "options may come before or after them" in proc.stdout
    assert "MODEL.WEIGHTS" not in proc.stdout and "cfg.yaml" not in proc.stdout
    for cmd in (["train_net.py", "--help"], ["-m", "rs_detectron2.predict", "--help"]):
        proc = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "overrides, flags, expected",
    [
        (["train.device=cuda"], [], "no CUDA device is visible"),
        (["train.amp.enabled=True"], [], "train.amp.enabled=True needs a CUDA device"),
        (["train.max_itr=2", "--dataset", "a:b.json:c"], [], "did you mean train.max_iter?"),
    ],
)
def test_a_run_that_cannot_start_exits_with_status_2(tmp_path, capsys, overrides, flags, expected):
    from rs_detectron2.engine import default_argument_parser, prepare_run

    if "train.device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    argv = ["--config-file", os.path.join(REPO, TINY_FASTER), *overrides, *flags]
    argv.append(f"train.output_dir={tmp_path / 'out'}")
    with pytest.raises(SystemExit) as e:
        prepare_run(default_argument_parser().parse_args(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train_net.py: error: ") and expected in err


def test_noncontiguous_category_ids_load_without_detectron2s_warning(tmp_path, caplog):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from rs_detectron2.data import register_user_dataset

    root = str(tmp_path)
    json_file = _write_dataset(root, num_images=2)
    with open(json_file) as f:
        data = json.load(f)
    for a in data["annotations"]:
        a["category_id"] = {1: 7, 2: 30}[a["category_id"]]
    data["categories"] = [{"id": 7, "name": "disc"}, {"id": 30, "name": "block"}]
    with open(json_file, "w") as f:
        json.dump(data, f)
    register_user_dataset("ids_7_30", json_file, root)
    try:
        with caplog.at_level("WARNING"):
            dicts = DatasetCatalog.get("ids_7_30")
    finally:
        DatasetCatalog.remove("ids_7_30")
        MetadataCatalog.remove("ids_7_30")
    assert {a["category_id"] for d in dicts for a in d["annotations"]} == {0, 1}
    assert "Category ids in annotations" not in caplog.text
