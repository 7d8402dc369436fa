# aLRP Loss on the RS-Faster R-CNN model and recipe (LR 0.012, 16 images, 1x), so that the two
# losses are compared on one setting: the RPN ranks objectness with aLRP (tau 0.7, head weight
# 0.2), the R-CNN its K sigmoid classes over every proposal (tau 0.5), each with its own
# self-balance (initial weight 50, updated once per epoch).
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco import TRAIN_IMAGES
from .rs_faster_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # iterations

model.proposal_generator.ranking_loss = L(ALRPLoss)(tau=0.7, period=EPOCH, init_weight=50.0)
model.roi_heads.box_predictor.ranking_loss = L(ALRPLoss)(tau=0.5, period=EPOCH, init_weight=50.0)
