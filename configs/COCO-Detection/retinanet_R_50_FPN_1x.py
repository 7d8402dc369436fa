# Stock RetinaNet R-50-FPN, 1x, with the same data and schedule as the RS dense models; only the
# model and the learning rate (0.01, Detectron2's) differ.
from ..common.data.coco import dataloader
from ..common.models.retinanet_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_1x as lr_multiplier
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.01
