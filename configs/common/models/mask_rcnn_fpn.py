# Stock Detectron2 Mask R-CNN R-50-FPN (the model zoo's common model), baseline of RS-Mask R-CNN.
from detectron2.model_zoo import get_config

model = get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
