# Stock Detectron2 FCOS, tiny (ResNet-18 BN, 64-channel FPN P3-P7) on the generated shapes
# dataset, CPU: the baseline of rs_fcos_tiny.py, at the shared tiny LR.
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.fcos_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/fcos_tiny"
