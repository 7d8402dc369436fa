# Stock Cascade R-CNN, tiny: the tiny RS-Cascade R-CNN's recipe, gradient clipping included, so that
# the pair differs in the heads only (shapes data, CPU).
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes import NUM_CLASSES
from ..common.models.cascade_rcnn_fpn import model
from .rs_cascade_rcnn_tiny import dataloader, lr_multiplier, optimizer, train

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
train.output_dir = "./output/cascade_rcnn_tiny"
