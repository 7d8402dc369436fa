# RS-PAA, tiny (ResNet-18 BN, 64-channel FPN P3-P7) on the generated shapes dataset, CPU.
from ..common.models.tiny_dense import rs_paa as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008  # the paper's dense-RS LR; RS gradients are bounded, no NaN seen here
train.output_dir = "./output/rs_paa_tiny"
