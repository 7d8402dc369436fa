# Stock SOLOv2, tiny (ResNet-18 BN, 64-channel FPN, grids 16/12/8/6/4) on the generated shapes
# dataset, CPU; bitmask targets and gradient clipping at 35 as the full recipe.
from rs_detectron2.model_zoo.tiny_solov2 import tiny_solov2

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.solov2_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_solov2(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.instance_mask_format = "bitmask"
train.clip_gradients = dict(max_norm=35.0, norm_type=2.0)
train.output_dir = "./output/solov2_tiny"
