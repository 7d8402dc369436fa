# Stock SOLOv2-light R-34-FPN at 448 px, 3x: the R-101 recipe (solov2_R_101_FPN_3x.py) with the
# light model (instance head of 2 convs x 256, 128-channel kernels, smaller scale ranges), the
# light data (448 px, 32 images) and LR 0.02. Reported: 32.0 mask AP (SOLO model zoo).
# ResNet-34 starts from torchvision's ImageNet weights (Detectron2's zoo has no R-34), expected at
# torchvision_R_34.pkl (train.init_checkpoint=PATH to change it), converted with
#   python -m rs_detectron2.model_zoo.convert_torchvision --input resnet34-<hash>.pth \
#       --output torchvision_R_34.pkl
from ..common.data.coco_solov2_light import ITERS_PER_EPOCH, dataloader
from ..common.models.solov2_fpn import light_r34
from ..common.schedule import solov2_3x
from .solov2_R_101_FPN_3x import model, optimizer, train

model = light_r34(model)
optimizer.lr = 0.02
train.max_iter, lr_multiplier = solov2_3x(ITERS_PER_EPOCH)
train.init_checkpoint = "torchvision_R_34.pkl"
