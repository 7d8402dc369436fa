# Stock RetinaNet, tiny (ResNet-18 BN, 64-channel FPN P3-P7) on the generated shapes dataset, CPU.
from ..common.models.tiny_dense import retinanet as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.005  # 0.01 went NaN after ~50 iterations from scratch (notes)
train.output_dir = "./output/retinanet_tiny"
