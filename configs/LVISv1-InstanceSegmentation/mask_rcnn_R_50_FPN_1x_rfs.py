# Stock Mask R-CNN R-50-FPN on LVIS v1 with the same data and schedule as RS-Mask R-CNN; test
# settings are Detectron2's for LVIS (score threshold 0.0001, 300 detections per image).
from ..common.data.lvis import dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

NUM_CLASSES = 1203

model.roi_heads.num_classes = NUM_CLASSES
model.roi_heads.box_predictor.num_classes = NUM_CLASSES
model.roi_heads.mask_head.num_classes = NUM_CLASSES
model.roi_heads.box_predictor.test_score_thresh = 0.0001
model.roi_heads.box_predictor.test_topk_per_image = 300

optimizer.lr = 0.02
