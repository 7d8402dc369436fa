# Stock Cascade R-CNN R-50-FPN (boxes only), the baseline of RS-Cascade R-CNN.
from detectron2.model_zoo import get_config

model = get_config("common/models/cascade_rcnn.py").model
model.backbone.bottom_up.freeze_at = 2
model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
