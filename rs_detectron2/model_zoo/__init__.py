"""Configs shipped with rs_detectron2, by path relative to ``configs/`` (as Detectron2's model zoo).

from rs_detectron2 import model_zoo
cfg = model_zoo.get_config("COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py")
model = model_zoo.get("quick_schedules/rs_mask_rcnn_tiny.py")   # untrained nn.Module
"""

from .model_zoo import config_dir, get, get_config, get_config_file, list_configs

__all__ = ["config_dir", "get", "get_config", "get_config_file", "list_configs"]
