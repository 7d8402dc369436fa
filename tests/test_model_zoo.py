import pytest

from rs_detectron2 import model_zoo


def test_list_configs_covers_every_model():
    configs = model_zoo.list_configs()
    assert "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py" in configs
    assert "quick_schedules/rs_mask_rcnn_tiny.py" in configs
    assert not any(c.startswith("common") for c in configs)


def test_get_builds_a_model_on_cpu():
    model = model_zoo.get("quick_schedules/rs_faster_rcnn_tiny.py", device="cpu")
    assert type(model.roi_heads).__name__ == "RSStandardROIHeads"
    assert next(model.parameters()).device.type == "cpu"


def test_unknown_config_and_trained_weights_are_clear_errors():
    with pytest.raises(RuntimeError, match="not a config"):
        model_zoo.get_config("COCO-Detection/nope.py")
    with pytest.raises(RuntimeError, match="no trained weights"):
        model_zoo.get_config("COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py", trained=True)
