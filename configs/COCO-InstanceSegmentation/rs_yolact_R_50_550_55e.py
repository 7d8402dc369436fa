# RS-YOLACT R-50, 550 px, 55 epochs (paper: 29.9 mask AP, 33.8 box AP on COCO val2017): the stock
# recipe (yolact_R_50_550_55e.py: SGD, weight decay 5e-4, 500-iteration warmup from 0.1 x LR) at
# the authors' RS settings: 32 images per batch, LR 6e-3, cosine to 0 over the 55 epochs.
from fvcore.common.param_scheduler import CosineParamScheduler

from detectron2.config import LazyCall as L

from ..common.data.coco_yolact550 import ITERS_PER_EPOCH
from ..common.models.rs_yolact_fpn import model
from .yolact_R_50_550_55e import dataloader, lr_multiplier, optimizer, train

dataloader.train.total_batch_size = 32
optimizer.lr = 0.006
train.max_iter = 55 * ITERS_PER_EPOCH
lr_multiplier.scheduler = L(CosineParamScheduler)(start_value=1.0, end_value=0.0)
lr_multiplier.warmup_length = 500 / train.max_iter
