# AP Loss on the RS-RetinaNet model and recipe (RetinaNet head and anchors, IoU assignment, LR
# 0.008, 16 images, 1x): AP (delta 1) plus 2 x score-weighted GIoU. The AP-Loss paper trains
# RetinaNet at 512 px for 100 epochs (ap_retinanet_R_50_FPN_512_100e.py); this 1x is ours.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from .rs_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
