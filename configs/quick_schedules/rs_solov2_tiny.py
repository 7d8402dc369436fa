# RS-SOLOv2, tiny: the tiny stock SOLOv2's recipe (solov2_tiny.py), so that the pair differs in the
# loss only.
from rs_detectron2.model_zoo.tiny_solov2 import tiny_solov2

from ..common.data.shapes import NUM_CLASSES
from ..common.models.rs_solov2_fpn import model
from .solov2_tiny import dataloader, lr_multiplier, optimizer, train

model = tiny_solov2(model, num_classes=NUM_CLASSES)
train.output_dir = "./output/rs_solov2_tiny"
