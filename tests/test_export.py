"""rs_detectron2.export: every tiny model traces to TorchScript and gives the eager detections;
the failures that tracing and ONNX can meet are reported with a reason."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig
from detectron2.structures import Boxes, Instances

from rs_detectron2 import export
from rs_detectron2.deploy import (
    ExportedModel,
    ExportError,
    compare_instances,
    export_model,
    sample_inputs,
)
from rs_detectron2.model_zoo import get_config_file
from rs_detectron2.utils.testing import batch, build_tiny, make_image

# every RS architecture (the AP / aLRP configs share these heads) and one stock baseline
MODELS = [
    "rs_faster_rcnn_tiny.py",
    "rs_mask_rcnn_tiny.py",
    "rs_cascade_rcnn_tiny.py",
    "rs_retinanet_tiny.py",
    "rs_atss_tiny.py",
    "rs_paa_tiny.py",
    "rs_fcos_tiny.py",
    "mask_rcnn_tiny.py",
]


def calibrated_tiny(name, seed=0):
    """A tiny model in eval mode whose BN statistics come from one batch: with the initial
    statistics every score saturates at 1 and the order of the detections is arbitrary."""
    model = build_tiny(name, seed=seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():  # BN lives in the backbone only
        model.backbone(model.preprocess_image(batch()).tensor)
    return model.eval()


def image_input(height, width, seed):
    image = make_image(height, width, [], [], seed=seed)["image"]
    return [{"image": image, "height": height + 17, "width": width + 23}]


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_export_gives_the_eager_detections(name, tmp_path):
    model = calibrated_tiny(name)
    # no check inside export_model: this test makes it (test_command_* covers the built-in one)
    inputs = image_input(128, 160, seed=1)
    exported = export_model(model, inputs, "torchscript", str(tmp_path), check_inputs=[])
    assert os.path.isfile(tmp_path / "model.ts")
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["format"] == "torchscript"
    assert info["postprocessed"] == (info["meta_architecture"] == "RSDenseDetector")
    # a size and content it was not traced with, post-processed to another output size
    inputs = image_input(96, 144, seed=2)
    with torch.no_grad():
        expected = model(inputs)[0]["instances"]
    actual = exported(inputs)[0]["instances"]
    assert len(expected) > 0
    assert actual.image_size == (96 + 17, 144 + 23)
    fields = {"pred_boxes", "scores", "pred_classes"}
    if "mask" in name:
        fields.add("pred_masks")
        assert actual.pred_masks.shape[-2:] == (96 + 17, 144 + 23)
        # the graph's own outputs: boxes at the input size and 28 x 28 RoI masks
        raw = exported.raw(inputs[0]["image"])
        assert raw.image_size == (96, 144) and raw.pred_masks.shape[1:] == (1, 28, 28)
    assert set(actual.get_fields()) == fields
    # boxes in pixels, scores, classes and pasted masks
    assert compare_instances(expected, actual, atol=1e-3) <= 1e-3


def test_compare_instances_ignores_the_order_of_ties_but_not_a_moved_box():
    a = Instances((10, 10), pred_boxes=Boxes(torch.tensor([[0.0, 0, 5, 5], [1, 1, 6, 6]])))
    a.scores = torch.tensor([0.5, 0.5])
    a.pred_classes = torch.tensor([1, 2])
    b = a[torch.tensor([1, 0])]
    assert compare_instances(a, b) == 0.0
    c = Instances((10, 10), **a.get_fields())
    c.pred_boxes = Boxes(a.pred_boxes.tensor + torch.tensor([0.0, 0, 0, 0.01]))
    with pytest.raises(AssertionError, match="no match"):
        compare_instances(a, c)
    with pytest.raises(AssertionError, match="detections"):
        compare_instances(a, a[:1])


class BranchingModel(nn.Module):
    """A detector whose box depends on a Python branch on the image's content."""

    def forward(self, inputs):
        image = inputs[0]["image"]
        scale = 2.0 if float(image.float().mean()) > 100 else 1.0  # frozen by tracing
        instances = Instances(tuple(image.shape[-2:]))
        instances.pred_boxes = Boxes(torch.tensor([[1.0, 1.0, 8.0, 8.0]]) * scale)
        instances.scores = image.float().mean()[None] / 255
        instances.pred_classes = torch.zeros(1, dtype=torch.long)
        return [{"instances": instances}]


def test_a_data_dependent_branch_is_reported(tmp_path):
    bright = [{"image": torch.full((3, 16, 16), 200, dtype=torch.uint8)}]
    dark = [{"image": torch.full((3, 16, 16), 20, dtype=torch.uint8)}]
    with pytest.raises(ExportError, match="depends on the input.*--fixed-size"):
        export_model(BranchingModel(), bright, "torchscript", str(tmp_path), [bright, dark])
    # the same branch on images that take it gives a valid export
    export_model(BranchingModel(), bright, "torchscript", str(tmp_path), [bright])


def test_a_fixed_size_export_refuses_other_sizes(tmp_path):
    inputs = [{"image": torch.full((3, 16, 24), 200, dtype=torch.uint8)}]
    exported = export_model(BranchingModel(), inputs, "torchscript", str(tmp_path), fixed_size=True)
    assert exported.info["fixed_input_size"] == [16, 24]
    assert len(exported.raw(inputs[0]["image"])) == 1
    with pytest.raises(ValueError, match=r"exported for \(16, 24\) inputs only"):
        exported.raw(torch.full((3, 24, 16), 200, dtype=torch.uint8))


class StringOutputModel(BranchingModel):
    def forward(self, inputs):
        outputs = super().forward(inputs)
        outputs[0]["instances"].names = ["one"]
        return outputs


def test_outputs_that_do_not_flatten_to_tensors_are_reported(tmp_path):
    inputs = [{"image": torch.zeros((3, 16, 16), dtype=torch.uint8)}]
    with pytest.raises(ExportError, match="could not be traced.*flatten to tensors"):
        export_model(StringOutputModel(), inputs, "torchscript", str(tmp_path))


def test_onnx_without_the_onnx_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    inputs = image_input(64, 64, seed=0)
    with pytest.raises(ExportError, match=r"onnx is not installed: pip install onnx"):
        export_model(BranchingModel(), inputs, "onnx", str(tmp_path))
    assert not os.path.exists(tmp_path / "model.onnx")


def test_onnx_export_gives_the_eager_detections(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = calibrated_tiny("rs_faster_rcnn_tiny.py")
    exported = export_model(model, image_input(128, 160, seed=1), "onnx", str(tmp_path))
    inputs = image_input(96, 144, seed=2)
    with torch.no_grad():
        expected = model(inputs)[0]["instances"]
    compare_instances(expected, exported(inputs)[0]["instances"], atol=1e-3)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Weights of the calibrated tiny RS-Faster R-CNN, saved as a training run saves them."""
    folder = tmp_path_factory.mktemp("weights")
    model = calibrated_tiny("rs_faster_rcnn_tiny.py", seed=4)
    DetectionCheckpointer(model, save_dir=str(folder)).save("model")
    return model, str(folder / "model.pth")


def write_image(path, height, width, seed):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_command_exports_checks_and_records_the_classes(tiny_checkpoint, tmp_path, capsys):
    model, weights = tiny_checkpoint
    image_path = str(tmp_path / "sample.png")
    write_image(image_path, 120, 150, seed=5)
    config = get_config_file("quick_schedules/rs_faster_rcnn_tiny.py")
    out = str(tmp_path / "export")
    args = ["--config-file", config, "--weights", weights, "--output", out]
    status = export.main(args + ["--format", "torchscript", "--sample-image", image_path])
    assert status == 0
    assert "gives the eager model's detections" in capsys.readouterr().out
    info = json.loads(open(os.path.join(out, "export.json")).read())
    assert info["input_format"] == "BGR" and len(info["thing_classes"]) == 8

    # the exported model reproduces the checkpoint's eager detections on the resized image
    inputs = sample_inputs(LazyConfig.load(config), image_path)
    assert inputs[0]["image"].shape[-2:] == (160, 200)  # the test resize: short edge 160
    with torch.no_grad():
        expected = model(inputs)[0]["instances"]
    actual = ExportedModel(out)(inputs)[0]["instances"]
    assert actual.image_size == (120, 150)
    compare_instances(expected, actual)


def test_command_reports_a_missing_onnx_package(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    image_path = str(tmp_path / "sample.png")
    write_image(image_path, 64, 64, seed=6)
    config = get_config_file("quick_schedules/rs_faster_rcnn_tiny.py")
    args = ["--config-file", config, "--weights", tiny_checkpoint[1], "--format", "onnx"]
    status = export.main(args + ["--output", str(tmp_path), "--sample-image", image_path])
    assert status == 2
    assert "onnx is not installed: pip install onnx" in capsys.readouterr().err


def test_command_reports_missing_weights(tmp_path, capsys):
    config = get_config_file("quick_schedules/rs_retinanet_tiny.py")
    args = ["--config-file", config, "--weights", str(tmp_path / "none.pth")]
    assert export.main(args + ["--output", str(tmp_path)]) == 2
    assert "cannot load --weights" in capsys.readouterr().err
