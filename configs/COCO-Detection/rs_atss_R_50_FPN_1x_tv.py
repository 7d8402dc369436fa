# RS-ATSS R-50-FPN, 1x, on the authors' backbone: torchvision's ImageNet R-50 as in the
# paper's runs (pytorch style, BN statistics frozen and affine trainable, RGB input with ImageNet
# mean / std; common/models/torchvision_r50.py). Weights: Detectron2's copy of torchvision's
# ImageNet R-50 (the checkpoint mmdetection loads), downloaded on first use; a checkpoint of your
# own goes through `python -m rs_detectron2.model_zoo.convert_torchvision` first.
from ..common.models.torchvision_r50 import use_torchvision_r50
from .rs_atss_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

use_torchvision_r50(model, dataloader, optimizer, train)
