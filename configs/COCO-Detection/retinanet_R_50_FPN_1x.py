# Stock RetinaNet R-50-FPN, 1x: RS-RetinaNet's data and schedule, so that only the model and the
# learning rate (Detectron2's 0.01) differ.
from ..common.models.retinanet_fpn import model
from .rs_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

optimizer.lr = 0.01
