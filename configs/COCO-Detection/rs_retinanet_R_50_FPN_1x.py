# RS-RetinaNet R-50-FPN, 1x: RetinaNet's head, anchors and IoU assignment trained with RS loss
# (no official RS-RetinaNet result exists; LR as the authors' other dense RS detectors).
from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
