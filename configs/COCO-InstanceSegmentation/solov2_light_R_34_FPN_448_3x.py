# Stock SOLOv2-light R-34-FPN at 448 px, 3x (the authors' recipe: 32 images, LR 0.02, 36 epochs,
# steps at 27 and 33, warmup 500 from 0.01 x LR, clipping at 35): instance head of 2 convs x 256,
# 128-channel kernels, smaller scale ranges. Reported: 32.0 mask AP (SOLO model zoo).
# ResNet-34 starts from torchvision's ImageNet weights (Detectron2's zoo has no R-34): convert them
# with Detectron2's tools/convert-torchvision-to-d2.py to R-34.pkl (or set train.init_checkpoint).
from ..common.data.coco_solov2_light import ITERS_PER_EPOCH, dataloader
from ..common.models.solov2_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epoch_multiplier
from ..common.train import train

model.backbone.bottom_up.stages.depth = 34
model.backbone.bottom_up.stages.pop("stride_in_1x1")  # basic blocks
model.update(pixel_mean=[123.675, 116.280, 103.530], pixel_std=[58.395, 57.120, 57.375])  # RGB
model.head.update(num_convs=2, conv_dims=256, num_kernels=128)
model.scale_ranges = [[1, 56], [28, 112], [56, 224], [112, 448], [224, 896]]

optimizer.lr = 0.02
train.max_iter = 36 * ITERS_PER_EPOCH
train.init_checkpoint = "R-34.pkl"
train.clip_gradients = dict(max_norm=35.0, norm_type=2.0)
lr_multiplier = epoch_multiplier(36, [27, 33], ITERS_PER_EPOCH)
lr_multiplier.warmup_factor = 0.01
