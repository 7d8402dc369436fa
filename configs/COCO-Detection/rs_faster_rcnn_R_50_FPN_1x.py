# RS-Faster R-CNN R-50-FPN, 1x (paper: 39.6 box AP on COCO val2017 with the authors' mmdet code).
from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_faster_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.012
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
