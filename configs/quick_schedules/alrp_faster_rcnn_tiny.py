# aLRP Loss on the tiny RS-Faster R-CNN model (as COCO-Detection/alrp_faster_rcnn_R_50_FPN_1x.py),
# shapes data, CPU.
import math

from detectron2.config import LazyCall as L

from rs_detectron2.losses import ALRPLoss
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes import NUM_CLASSES, TRAIN_IMAGES, dataloader
from ..common.models.rs_faster_rcnn_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 60 iterations

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
model.proposal_generator.ranking_loss = L(ALRPLoss)(tau=0.7, period=EPOCH, init_weight=50.0)
model.roi_heads.box_predictor.ranking_loss = L(ALRPLoss)(tau=0.5, period=EPOCH, init_weight=50.0)
dataloader.train.mapper.use_instance_mask = False
# From scratch, the self-balance weight of 50 on both heads sent the RPN logits to NaN within 50
# iterations; clipping the global gradient norm at 10 (as the tiny RS-Cascade) keeps it stable.
train.clip_gradients.max_norm = 10.0
train.output_dir = "./output/alrp_faster_rcnn_tiny"
