# RS-Faster R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.rs_faster_rcnn_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/rs_faster_rcnn_tiny"
