# RS-Mask R-CNN, tiny, on the LVIS-format shapes dataset (rs_shapes_lvis_*) with repeat-factor
# sampling and LVIS evaluation (APr / APc / APf), CPU.
from ..common.models.tiny_rcnn import rs_mask_rcnn as model
from ..common.tiny import lr_multiplier, lvis_dataloader as dataloader, optimizer, train

train.output_dir = "./output/rs_mask_rcnn_lvis_tiny"
