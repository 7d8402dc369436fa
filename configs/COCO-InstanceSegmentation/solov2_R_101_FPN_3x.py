# Stock SOLOv2 R-101-FPN, 3x with multi-scale training (the authors' recipe: 16 images, LR 0.01,
# 36 epochs with steps at 27 and 33, warmup 500 iterations from 0.01 x LR, gradient clipping at
# an L2 norm of 35; weight decay on every parameter, GN included). Detectron2's MSRA R-101 with
# FrozenBN (the authors: torchvision's). Reported: 39.1 mask AP (SOLO model zoo, COCO minival).
from ..common.data.coco_solov2 import ITERS_PER_EPOCH, dataloader
from ..common.models.solov2_fpn import model
from ..common.optim_dense import SGD as optimizer
from ..common.schedule import solov2_3x
from ..common.train import train

optimizer.lr = 0.01
train.max_iter, lr_multiplier = solov2_3x(ITERS_PER_EPOCH)
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.clip_gradients = dict(max_norm=35.0, norm_type=2.0)
