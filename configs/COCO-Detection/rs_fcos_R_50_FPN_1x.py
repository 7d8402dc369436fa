# RS-FCOS R-50-FPN, 1x, with the recipe of the authors' unreleased
# ranksort_fcos_r50_caffe_fpn_gn-head_4x4_1x_coco.py (no result of it exists): 16 images, LR 0.01,
# biases at 2 x LR without weight decay, gradients clipped to a global L2 norm of 35, a constant
# warmup at 1/3 x LR for 500 iterations, the authors' 1x (12 epochs).
from ..common.data.coco import TRAIN_IMAGES, dataloader
from ..common.models.rs_fcos_fpn import model
from ..common.optim_dense import SGD as optimizer
from ..common.schedule import epochs_1x
from ..common.train import train

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.01
# mmcv's bias_lr_mult=2, bias_decay_mult=0 by Detectron2's own options; these also reach the GN
# biases, which mmcv leaves at 1 x LR with weight decay
optimizer.params.update(base_lr="${..lr}", bias_lr_factor=2.0, weight_decay_bias=0.0)
train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
lr_multiplier.update(warmup_method="constant", warmup_factor=1 / 3)
train.clip_gradients.max_norm = 35.0
