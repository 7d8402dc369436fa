# Stock Cascade R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.cascade_rcnn_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/cascade_rcnn_tiny"
# Clipped as the tiny RS-Cascade (which needs it), so that the pair differs in the loss only;
# unclipped, this model scored about 3 box AP lower here.
train.clip_gradients.max_norm = 10.0
