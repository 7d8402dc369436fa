# AP Loss on the RS-RetinaNet model (RetinaNet head and anchors, IoU assignment): AP
# (delta 1) plus 2 x score-weighted GIoU. The AP-Loss paper trains RetinaNet at 512 px for 100
# epochs; this 1x recipe is ours, with the RS dense detectors' LR 0.008 and 16 images.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
optimizer.lr = 0.008

# 1x as the authors ran it: 12 epochs of train2017 (87,950 iterations at 16 images). Detectron2's
# 90k: `train.max_iter, lr_multiplier = d2_90k()` (from ..common.schedule).
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
