# Stock Detectron2 FCOS R-50-FPN (the model zoo's common model), the baseline of RS-FCOS: points
# labelled by centre sampling and per-level size ranges, focal loss, GIoU and a centerness branch
# on the box tower, test scores sqrt(class x centerness).
from detectron2.model_zoo import get_config

model = get_config("common/models/fcos.py").model
model.backbone.bottom_up.freeze_at = 2
