# Stock Cascade R-CNN R-50-FPN, 1x, same data and schedule as RS-Cascade R-CNN.
from ..common.data.coco import dataloader
from ..common.models.cascade_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.02
