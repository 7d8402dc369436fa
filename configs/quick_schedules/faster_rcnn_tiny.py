# Stock Faster R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from ..common.models.tiny_rcnn import faster as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/faster_rcnn_tiny"
