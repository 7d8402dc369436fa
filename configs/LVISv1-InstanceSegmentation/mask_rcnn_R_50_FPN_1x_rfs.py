# Stock Mask R-CNN R-50-FPN on LVIS v1: RS-Mask R-CNN's data and schedule, so that only the heads,
# the learning rate (Detectron2's 0.02) and the test score threshold (Detectron2's LVIS 0.0001)
# differ.
from ..common.data.lvis import NUM_CLASSES
from ..common.models.mask_rcnn_fpn import model
from .rs_mask_rcnn_R_50_FPN_1x_rfs import dataloader, lr_multiplier, optimizer, train

model.roi_heads.num_classes = NUM_CLASSES  # the box predictor and mask head follow
model.roi_heads.box_predictor.update(test_score_thresh=0.0001, test_topk_per_image=300)
optimizer.lr = 0.02
