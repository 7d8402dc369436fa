# aLRP Loss on the tiny RS-RetinaNet model and recipe (as
# COCO-Detection/alrp_retinanet_R_50_FPN_1x.py), shapes data, CPU.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss

from ..common.data.shapes import TRAIN_IMAGES
from .rs_retinanet_tiny import dataloader, lr_multiplier, model, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 60 iterations

model.ranking_loss = L(ALRPLoss)(tau=0.5, period=EPOCH, init_weight=50.0)
# Clipped to a global gradient norm of 10 (unlike the paper): from scratch, aLRP's self-balance
# weight of 50 can kill the classification tower (docs/benchmarks.md, "aLRP Loss on RetinaNet").
train.clip_gradients.max_norm = 10.0
train.output_dir = "./output/alrp_retinanet_tiny"
