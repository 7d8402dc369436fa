# AP Loss RetinaNet R-50-FPN with the aLRP paper's 512 px recipe (SSD-style augmentation, 100
# epochs of 32 images, steps at epochs 60 and 80, 6 anchors per location) and LR 0.002. One known
# difference: the authors' box loss is smooth L1 on the deltas; ours is 2 x score-weighted GIoU
# on the decoded boxes (the heads hand decoded boxes to the ranking loss). Reported: 35.4 box AP
# on minival (aLRP README, 500 px test).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from ..common.data.coco_ssd512 import ITERS_PER_EPOCH, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epoch_multiplier
from ..common.train import train

model.anchor_generator.sizes = [
    [s * 4 * 2 ** (k / 2) for k in range(2)] for s in [8, 16, 32, 64, 128]
]
model.head.num_anchors = 6
model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
optimizer.lr = 0.002
train.max_iter = 100 * ITERS_PER_EPOCH
lr_multiplier = epoch_multiplier(100, [60, 80], ITERS_PER_EPOCH)
train.ranking_pool_images = 8  # 4 GPUs x 8 images in the aLRP paper
