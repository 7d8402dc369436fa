# Stock FCOS R-50-FPN, 1x: Detectron2's model and optimiser (LR 0.01, no weight decay on norm
# parameters, biases like weights, no clipping) on RS-FCOS's data and 1x (12 epochs, linear
# warmup; Detectron2's own is 90k iterations with 1000 of warmup), so that only the model and the
# optimiser recipe differ.
from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.fcos_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.01
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
