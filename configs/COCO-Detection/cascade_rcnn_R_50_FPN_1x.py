# Stock Cascade R-CNN R-50-FPN, 1x: RS-Cascade R-CNN's data and schedule, so that only the heads
# and the learning rate (Detectron2's 0.02) differ.
from ..common.models.cascade_rcnn_fpn import model
from .rs_cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

optimizer.lr = 0.02
