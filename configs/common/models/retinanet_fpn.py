# Stock Detectron2 RetinaNet R-50-FPN (the model zoo's common model), the baseline of the RS dense
# detectors.
from detectron2.model_zoo import get_config

model = get_config("common/models/retinanet.py").model
model.backbone.bottom_up.freeze_at = 2
