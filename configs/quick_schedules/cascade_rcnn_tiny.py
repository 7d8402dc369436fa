# Stock Cascade R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from ..common.models.tiny_rcnn import cascade as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/cascade_rcnn_tiny"
