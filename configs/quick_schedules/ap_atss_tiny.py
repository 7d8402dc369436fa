# AP Loss on the tiny RS-ATSS model (as COCO-Detection/ap_atss_R_50_FPN_1x.py): the tiny
# AP-RetinaNet recipe (ap_retinanet_tiny.py) with the ATSS model, shapes data, CPU.
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES
from ..common.models.rs_atss_fpn import model
from .ap_retinanet_tiny import dataloader, lr_multiplier, optimizer, train
from .ap_retinanet_tiny import model as _retinanet

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
model.ranking_loss = _retinanet.ranking_loss
train.output_dir = "./output/ap_atss_tiny"
