# RS-Mask R-CNN R-50-FPN on LVIS v1 (Oksuz et al. 2021): RFS 0.001, multi-scale 640-800, LR 0.012,
# 16 images per batch, 1x in epochs of the repeated set; test score threshold 0.60, 300 detections
# per image. Reported: +3.4 box / +3.5 mask AP over the mmdet baseline (22.5 / 21.7).
from ..common.data.lvis import NUM_CLASSES, dataloader
from ..common.models.rs_mask_rcnn_fpn import model
from ..common.optim import SGD as optimizer
from ..common.schedule import repeated_epochs_1x
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES  # the box predictor and mask head follow
model.roi_heads.box_predictor.update(test_score_thresh=0.6, test_topk_per_image=300)
optimizer.lr = 0.012
train.epoch_schedule, train.max_iter, lr_multiplier = repeated_epochs_1x()
