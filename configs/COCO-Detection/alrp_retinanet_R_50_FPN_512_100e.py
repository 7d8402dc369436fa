# aLRP Loss RetinaNet R-50-FPN as the aLRP paper trains it: 512 x 512 SSD-style augmentation,
# 100 epochs of 32 images, LR 0.008 x0.1 at epochs 60 and 80; 6 anchors per location (2 scales per
# octave x 3 ratios), IoU assignment, GIoU localisation error, self-balance once per epoch.
# Reported: 39.0 box AP on minival (aLRP README, 500 px test).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco_ssd512 import ITERS_PER_EPOCH, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epoch_multiplier
from ..common.train import train

model.anchor_generator.sizes = [
    [s * 4 * 2 ** (k / 2) for k in range(2)] for s in [8, 16, 32, 64, 128]
]
model.head.num_anchors = 6
model.ranking_loss = L(ALRPLoss)(delta=1.0, tau=0.5, period=ITERS_PER_EPOCH, init_weight=50.0)
optimizer.lr = 0.008
train.max_iter = 100 * ITERS_PER_EPOCH
lr_multiplier = epoch_multiplier(100, [60, 80], ITERS_PER_EPOCH)
train.ranking_pool_images = 8  # 4 GPUs x 8 images in the aLRP paper
