# AP Loss on the RS-ATSS model and recipe: AP (delta 1) ranks all anchors x classes, plus 2 x
# score-weighted GIoU (constant weight, no self-balance), the Bucketed Ranking-based Losses
# recipe: LR 0.008, 16 images, 1x, NMS 0.6, score 0.05. Reported: 38.3 box AP (their README).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from .rs_atss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
