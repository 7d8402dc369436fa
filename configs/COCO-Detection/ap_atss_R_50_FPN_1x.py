# AP Loss on the RS-ATSS model: AP (delta 1) ranks all anchors x classes, plus 2 x
# score-weighted GIoU (constant weight, no self-balance), the Bucketed Ranking-based Losses
# recipe: LR 0.008, 16 images, 1x, NMS 0.6, score 0.05. Reported: 38.3 box AP (their README).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from ..common.data.coco import dataloader
from ..common.models.rs_atss_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
optimizer.lr = 0.008
