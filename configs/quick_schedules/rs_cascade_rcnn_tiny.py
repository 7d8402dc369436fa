# RS-Cascade R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from ..common.models.tiny_rcnn import rs_cascade_rcnn as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/rs_cascade_rcnn_tiny"
