# aLRP Loss on the RS-RetinaNet model (RetinaNet head and anchors, IoU assignment): aLRP
# (delta 1, tau 0.5) with its self-balance. The aLRP paper trains at 512 px for 100 epochs; this
# 1x recipe is ours, with the RS dense detectors' LR 0.008 and 16 images.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # iterations

dataloader.train.mapper.use_instance_mask = False
model.ranking_loss = L(ALRPLoss)(delta=1.0, tau=0.5, period=EPOCH, init_weight=50.0)
optimizer.lr = 0.008
