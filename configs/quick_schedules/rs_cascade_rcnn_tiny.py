# RS-Cascade R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.rs_cascade_rcnn_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/rs_cascade_rcnn_tiny"
# Clipped (the paper's configs are not): from scratch, the first positives of stages 2-3 are
# near-exact GT copies, self-balancing weights their box losses up and the boxes run off the image.
train.clip_gradients.max_norm = 10.0  # global L2 norm (rs_detectron2.engine.ClipGradNorm)
