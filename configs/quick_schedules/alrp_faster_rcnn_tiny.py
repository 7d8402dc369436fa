# aLRP Loss on the tiny RS-Faster R-CNN model and recipe (as
# COCO-Detection/alrp_faster_rcnn_R_50_FPN_1x.py), shapes data, CPU.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.shapes import TRAIN_IMAGES
from .rs_faster_rcnn_tiny import dataloader, lr_multiplier, model, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 60 iterations

model.proposal_generator.ranking_loss = L(ALRPLoss)(tau=0.7, period=EPOCH, init_weight=50.0)
model.roi_heads.box_predictor.ranking_loss = L(ALRPLoss)(tau=0.5, period=EPOCH, init_weight=50.0)
# Clipped as the tiny aLRP-RetinaNet: from scratch, the self-balance weight of 50 on both heads
# sends the RPN logits to NaN otherwise.
train.clip_gradients.max_norm = 10.0
train.output_dir = "./output/alrp_faster_rcnn_tiny"
