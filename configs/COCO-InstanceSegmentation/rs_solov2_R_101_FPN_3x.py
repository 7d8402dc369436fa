# RS-SOLOv2 R-101-FPN, 3x with multi-scale training: the stock recipe at 0.6 x its LR (0.006 at 16
# images). Paper: 39.7 mask AP, 66.9 mask oLRP on COCO val2017 (stock SOLOv2: 39.1).
from ..common.models.rs_solov2_fpn import model
from .solov2_R_101_FPN_3x import dataloader, lr_multiplier, optimizer, train

optimizer.lr = 0.006
