# RS-SOLOv2-light R-34-FPN at 448 px, 3x: the stock light recipe at 0.6 x its LR (0.012 at 32
# images). Paper: 32.6 mask AP, 72.7 mask oLRP on COCO val2017 (stock: 32.0). ResNet-34 weights:
# see solov2_light_R_34_FPN_448_3x.py.
from ..common.models.rs_solov2_fpn import model
from .solov2_light_R_34_FPN_448_3x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.stages.depth = 34
model.backbone.bottom_up.stages.pop("stride_in_1x1")  # basic blocks
model.update(pixel_mean=[123.675, 116.280, 103.530], pixel_std=[58.395, 57.120, 57.375])  # RGB
model.head.update(num_convs=2, conv_dims=256, num_kernels=128)
model.scale_ranges = [[1, 56], [28, 112], [56, 224], [112, 448], [224, 896]]

optimizer.lr = 0.012
