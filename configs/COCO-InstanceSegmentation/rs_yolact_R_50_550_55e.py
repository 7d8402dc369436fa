# RS-YOLACT R-50, 550 px, 55 epochs (paper: 29.9 mask AP, 33.8 box AP on COCO val2017): SGD LR
# 6e-3, momentum 0.9, weight decay 5e-4, 32 images per batch, cosine to 0 over 55 epochs after a
# 500-iteration linear warmup from 0.1 x LR, no gradient clipping; torchvision ResNet-50 weights.
from fvcore.common.param_scheduler import CosineParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from ..common.data.coco_yolact550 import ITERS_PER_EPOCH, dataloader
from ..common.models.rs_yolact_fpn import model
from ..common.optim import SGD as optimizer
from ..common.train import train

optimizer.lr = 0.006
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_norm = None  # mmdet decays the BN parameters too
train.max_iter = 55 * ITERS_PER_EPOCH
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=500 / train.max_iter,
    warmup_method="linear",
    warmup_factor=0.1,
)
