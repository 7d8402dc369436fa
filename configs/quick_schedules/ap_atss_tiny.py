# AP Loss on the tiny RS-ATSS model (as COCO-Detection/ap_atss_R_50_FPN_1x.py),
# shapes data, CPU.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss
from rs_detectron2.model_zoo.tiny import tiny_one_stage

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.rs_atss_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_one_stage(model, num_classes=NUM_CLASSES)
model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.008  # as the RS dense tiny configs
train.output_dir = "./output/ap_atss_tiny"
