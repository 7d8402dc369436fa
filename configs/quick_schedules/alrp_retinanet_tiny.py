# aLRP Loss on the tiny RS-RetinaNet model (as COCO-Detection/alrp_retinanet_R_50_FPN_1x.py),
# shapes data, CPU.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES, TRAIN_IMAGES, dataloader
from ..common.models.rs_retinanet_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 60 iterations

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
model.ranking_loss = L(ALRPLoss)(tau=0.5, period=EPOCH, init_weight=50.0)
dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008  # as the RS dense tiny configs
# Unclipped, one of three seeds lost its classification tower by iteration 180 (last ReLU all
# zero, every score 0.01: docs/benchmarks.md, "aLRP Loss on RetinaNet"); clipping the global
# gradient norm at 10, as the tiny aLRP-Faster R-CNN does, kept all three seeds training.
train.clip_gradients.max_norm = 10.0
train.output_dir = "./output/alrp_retinanet_tiny"
