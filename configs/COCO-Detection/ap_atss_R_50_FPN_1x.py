# AP Loss on the RS-ATSS model: AP (delta 1) ranks all anchors x classes, plus 2 x
# score-weighted GIoU (constant weight, no self-balance), the Bucketed Ranking-based Losses
# recipe: LR 0.008, 16 images, 1x, NMS 0.6, score 0.05. Reported: 38.3 box AP (their README).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_atss_fpn import model
from ..common.optim_dense import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
optimizer.lr = 0.008

# 1x as the authors ran it: 12 epochs of train2017 (87,950 iterations at 16 images). Detectron2's
# 90k: `train.max_iter, lr_multiplier = d2_90k()` (from ..common.schedule).
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
