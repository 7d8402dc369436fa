# aLRP Loss on the tiny RS-ATSS model (as COCO-Detection/alrp_atss_R_50_FPN_1x.py): the tiny
# aLRP-RetinaNet recipe (alrp_retinanet_tiny.py: loss, clipping) with the ATSS model, shapes data,
# CPU.
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES
from ..common.models.rs_atss_fpn import model
from .alrp_retinanet_tiny import dataloader, lr_multiplier, optimizer, train
from .alrp_retinanet_tiny import model as _retinanet

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
model.ranking_loss = _retinanet.ranking_loss
train.output_dir = "./output/alrp_atss_tiny"
