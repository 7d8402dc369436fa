# RS-FCOS tiny with ATSS's assignment, as COCO-Detection/rs_fcos_atss_R_50_FPN_1x.py: a square
# anchor of 8 x stride per point, the top 9 per level by centre distance, IoU >= mean + std.
from detectron2.config import LazyCall as L

from rs_detectron2.modeling import ATSSAssigner

from .rs_fcos_tiny import dataloader, lr_multiplier, model, optimizer, train

model.assigner = L(ATSSAssigner)(topk=9)
model.anchor_generator.sizes = [[8 * s] for s in model.anchor_generator.strides]
train.output_dir = "./output/rs_fcos_atss_tiny"
