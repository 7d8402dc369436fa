# RS-Mask R-CNN, tiny, on the LVIS-format shapes dataset (rs_shapes_lvis_*) with repeat-factor
# sampling and LVIS evaluation (APr / APc / APf), CPU.
from rs_detectron2.model_zoo.tiny import tiny_two_stage

from ..common.data.shapes_lvis import NUM_CLASSES, dataloader
from ..common.models.rs_mask_rcnn_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_two_stage(model, num_classes=NUM_CLASSES)
train.output_dir = "./output/rs_mask_rcnn_lvis_tiny"
