# RS-YOLACT, tiny: the tiny stock YOLACT's recipe (LR 0.001 included), so that the pair differs in
# the loss only; the authors' RS-YOLACT LR (0.006 at 32 images) trains worse at this size.
from rs_detectron2.model_zoo.tiny_yolact import tiny_yolact

from ..common.data.shapes import NUM_CLASSES
from ..common.models.rs_yolact_fpn import model
from .yolact_tiny import dataloader, lr_multiplier, optimizer, train

model = tiny_yolact(model, num_classes=NUM_CLASSES)
train.output_dir = "./output/rs_yolact_tiny"
