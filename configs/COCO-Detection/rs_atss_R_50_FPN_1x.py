# RS-ATSS R-50-FPN, 1x (paper: 39.9 box AP on COCO val2017 with the authors' mmdet code).
from ..common.data.coco import dataloader
from ..common.models.rs_atss_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008
