# Stock YOLACT, tiny (ResNet-18 BN, 64-channel FPN P3-P7, 160 x 160 input) on the generated shapes
# dataset, CPU.
from rs_detectron2.model_zoo.tiny_yolact import tiny_yolact, tiny_yolact_data

from ..common.data.shapes import NUM_CLASSES, dataloader
from ..common.models.yolact_fpn import model
from ..common.tiny import lr_multiplier, optimizer, train

model = tiny_yolact(model, num_classes=NUM_CLASSES)
dataloader = tiny_yolact_data(dataloader)
optimizer.lr = 0.001  # the authors' stock LR; tiny.py's 0.005 diverges from scratch
train.output_dir = "./output/yolact_tiny"
