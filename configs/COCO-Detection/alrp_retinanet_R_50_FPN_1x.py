# aLRP Loss on the RS-RetinaNet model and recipe (RetinaNet head and anchors, IoU assignment, LR
# 0.008, 16 images, 1x): aLRP (delta 1, tau 0.5) with its self-balance. The aLRP paper trains at
# 512 px for 100 epochs (alrp_retinanet_R_50_FPN_512_100e.py); this 1x is ours.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco import TRAIN_IMAGES
from .rs_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # iterations

model.ranking_loss = L(ALRPLoss)(delta=1.0, tau=0.5, period=EPOCH, init_weight=50.0)
