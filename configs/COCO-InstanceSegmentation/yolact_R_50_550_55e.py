# YOLACT R-50, 550 px, 55 epochs, the RS paper's baseline as mmdet trains it (yolact_r50_1x8:
# 29.0 mask AP on COCO val2017): SGD LR 1e-3, momentum 0.9, weight decay 5e-4, 8 images per
# batch, LR x0.1 at epochs 20, 42, 49 and 52 after a 500-iteration linear warmup from 0.1 x LR.
import math

from ..common.data.coco import TRAIN_IMAGES
from ..common.data.coco_yolact550 import dataloader
from ..common.models.yolact_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epoch_multiplier
from ..common.train import train

dataloader.train.total_batch_size = 8
ITERS_PER_EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 14659
optimizer.lr = 0.001
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_norm = None  # mmdet decays the BN parameters too
train.max_iter = 55 * ITERS_PER_EPOCH
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
lr_multiplier = epoch_multiplier(55, [20, 42, 49, 52], ITERS_PER_EPOCH, warmup_factor=0.1)
