# Stock Mask R-CNN R-50-FPN on LVIS v1 with the same data and schedule as RS-Mask R-CNN; test
# settings are Detectron2's for LVIS (score threshold 0.0001, 300 detections per image).
from ..common.data.lvis import NUM_CLASSES, dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES  # the box predictor and mask head follow
model.roi_heads.box_predictor.update(test_score_thresh=0.0001, test_topk_per_image=300)
optimizer.lr = 0.02
