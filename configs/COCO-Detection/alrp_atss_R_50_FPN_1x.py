# aLRP Loss on the RS-ATSS model: aLRP (delta 1, tau 0.5) with its self-balance (initial
# weight 50, updated once per epoch). No official 1x config exists: the RS-ATSS settings with the
# aLRP loss (ours). LR 0.008, 16 images.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_atss_fpn import model
from ..common.optim_dense import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # iterations

dataloader.train.mapper.use_instance_mask = False
model.ranking_loss = L(ALRPLoss)(delta=1.0, tau=0.5, period=EPOCH, init_weight=50.0)
optimizer.lr = 0.008

# 1x as the authors ran it: 12 epochs of train2017 (87,950 iterations at 16 images). Detectron2's
# 90k: `train.max_iter, lr_multiplier = d2_90k()` (from ..common.schedule).
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
