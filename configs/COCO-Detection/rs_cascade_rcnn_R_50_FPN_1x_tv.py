# RS-Cascade R-CNN R-50-FPN, 1x, on the authors' backbone: torchvision's ImageNet R-50 as in the
# paper's runs (pytorch style, BN statistics frozen and affine trainable, RGB input with ImageNet
# mean / std; common/models/torchvision_r50.py). The weights are expected at torchvision_R_50.pkl
# (train.init_checkpoint=PATH to change it), made from torchvision's checkpoint with
#   python -m rs_detectron2.model_zoo.convert_torchvision --input resnet50-19c8e357.pth \
#       --output torchvision_R_50.pkl
from ..common.models.torchvision_r50 import use_torchvision_r50
from .rs_cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

use_torchvision_r50(model, dataloader, optimizer, train)
