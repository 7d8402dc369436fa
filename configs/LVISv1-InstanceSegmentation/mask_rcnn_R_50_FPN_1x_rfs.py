# Stock Mask R-CNN R-50-FPN on LVIS v1 with the same data and schedule as RS-Mask R-CNN; test
# settings are Detectron2's for LVIS (score threshold 0.0001, 300 detections per image).
from ..common.data.lvis import NUM_CLASSES, dataloader
from ..common.models.mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import d2_90k, epoch_schedule_1x
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES  # the box predictor and mask head follow
model.roi_heads.box_predictor.update(test_score_thresh=0.0001, test_topk_per_image=300)
optimizer.lr = 0.02

# 1x as the authors ran it: 12 epochs of the repeated set (each image ceil(r) times), LR x0.1 after
# epochs 8 and 11. The set's size is known once the dataset is loaded: train_net.py sets
# train.max_iter and the LR steps at start and logs them. train.epoch_schedule=null keeps the 90k
# below (Detectron2's 1x; with dataloader.train.rounding=stochastic, Detectron2's LVIS recipe).
train.epoch_schedule = epoch_schedule_1x()
train.max_iter, lr_multiplier = d2_90k()
