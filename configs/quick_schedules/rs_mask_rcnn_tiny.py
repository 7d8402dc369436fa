# RS-Mask R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from ..common.models.tiny_rcnn import rs_mask_rcnn as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

train.output_dir = "./output/rs_mask_rcnn_tiny"
