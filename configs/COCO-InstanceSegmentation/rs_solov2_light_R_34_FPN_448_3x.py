# RS-SOLOv2-light R-34-FPN at 448 px, 3x: the stock light recipe at 0.6 x its LR (0.012 at 32
# images). Paper: 32.6 mask AP, 72.7 mask oLRP on COCO val2017 (stock: 32.0). ResNet-34 weights:
# see solov2_light_R_34_FPN_448_3x.py.
from ..common.models.rs_solov2_fpn import model
from ..common.models.solov2_fpn import light_r34
from .solov2_light_R_34_FPN_448_3x import dataloader, lr_multiplier, optimizer, train

model = light_r34(model)
optimizer.lr = 0.012
