# Stock Mask R-CNN R-50-FPN, 1x: RS-Mask R-CNN's data and schedule, so that only the heads and the
# learning rate (Detectron2's 0.02) differ.
from ..common.models.mask_rcnn_fpn import model
from .rs_mask_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

optimizer.lr = 0.02
