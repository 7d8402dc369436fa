# aLRP Loss on the RS-ATSS model and recipe (LR 0.008, 16 images, 1x): aLRP (delta 1, tau 0.5)
# with its self-balance (initial weight 50, updated once per epoch). No official 1x config exists.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco import TRAIN_IMAGES
from .rs_atss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # iterations

model.ranking_loss = L(ALRPLoss)(delta=1.0, tau=0.5, period=EPOCH, init_weight=50.0)
