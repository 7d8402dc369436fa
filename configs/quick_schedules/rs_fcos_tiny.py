# RS-FCOS, tiny (ResNet-18 BN, 64-channel FPN P3-P7) on the generated shapes dataset, CPU. The
# optimiser is the tiny one of every pair (the COCO recipe's bias LR and clipping are left out),
# so that RS-FCOS and the stock FCOS differ in model and LR only.
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.rs_fcos_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008  # the paper's dense-RS LR: bounded RS gradients train at it from scratch
train.output_dir = "./output/rs_fcos_tiny"
