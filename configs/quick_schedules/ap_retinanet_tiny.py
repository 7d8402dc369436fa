# AP Loss on the tiny RS-RetinaNet model and recipe (as COCO-Detection/ap_retinanet_R_50_FPN_1x.py),
# shapes data, CPU.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from .rs_retinanet_tiny import dataloader, lr_multiplier, model, optimizer, train

model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
train.output_dir = "./output/ap_retinanet_tiny"
