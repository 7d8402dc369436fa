# Stock SOLOv2-light R-34-FPN at 448 px, 3x (the authors' recipe: 32 images, LR 0.02, 36 epochs,
# steps at 27 and 33, warmup 500 from 0.01 x LR, clipping at 35): instance head of 2 convs x 256,
# 128-channel kernels, smaller scale ranges. Reported: 32.0 mask AP (SOLO model zoo).
# ResNet-34 starts from torchvision's ImageNet weights (Detectron2's zoo has no R-34), expected at
# torchvision_R_34.pkl (train.init_checkpoint=PATH to change it), converted with
#   python -m rs_detectron2.model_zoo.convert_torchvision --input resnet34-<hash>.pth \
#       --output torchvision_R_34.pkl
from ..common.data.coco_solov2_light import ITERS_PER_EPOCH, dataloader
from ..common.models.solov2_fpn import light_r34, model
from ..common.optim_dense import SGD as optimizer
from ..common.schedule import epoch_multiplier
from ..common.train import train

model = light_r34(model)
optimizer.lr = 0.02
train.max_iter = 36 * ITERS_PER_EPOCH
train.init_checkpoint = "torchvision_R_34.pkl"
train.clip_gradients = dict(max_norm=35.0, norm_type=2.0)
lr_multiplier = epoch_multiplier(36, [27, 33], ITERS_PER_EPOCH)
lr_multiplier.warmup_factor = 0.01
