# RS-Cascade R-CNN R-50-FPN, 1x, on the authors' backbone: torchvision's ImageNet R-50, as in the
# paper's runs (common/models/torchvision_r50.py: what it changes, where the weights come from).
from ..common.models.torchvision_r50 import use_torchvision_r50
from .rs_cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

use_torchvision_r50(model, dataloader, optimizer, train)
