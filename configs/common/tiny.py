# Data, optimiser, schedule and training options of the tiny CPU configs in quick_schedules/:
# the generated shapes dataset (rs_detectron2.data.register_shapes), images of 128-160 px, batch 4.
# `dataloader` reads its COCO-format splits, `lvis_dataloader` the LVIS-format ones.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .data.coco import dataloader
from .data.lvis import dataloader as lvis_dataloader
from .optim import SGD as optimizer
from .train import train

dataloader.train.dataset.names = "rs_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128, 144, 160), sample_style="choice", max_size=256),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "rs_shapes_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=160, max_size=256)]
dataloader.test.num_workers = 0

# From-scratch RS heads diverged here at 0.01 (NaN around iteration 30, two seeds); 0.005 trains.
optimizer.lr = 0.005

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[240, 300]),
    warmup_length=0.1,
    warmup_method="linear",
    warmup_factor=0.001,
)

train.max_iter = 300
train.init_checkpoint = ""
train.eval_period = 300
train.log_period = 20
train.checkpointer.period = 100
train.output_dir = "./output/tiny"

# The same data in LVIS format (rs_shapes_lvis_*), with the LVIS loader of data/lvis.py:
# repeat-factor sampling and LVIS evaluation. The threshold is scaled to 240 training images:
# LVIS's 0.001 would repeat nothing here (the rarest class is in 3 of 240 images, f = 0.0125); at
# 0.1 its images are repeated sqrt(0.1 / 0.0125) = 2.8 times.
lvis_dataloader.train.dataset.names = "rs_shapes_lvis_train"
lvis_dataloader.train.repeat_thresh = 0.1
lvis_dataloader.train.mapper.augmentations = dataloader.train.mapper.augmentations
lvis_dataloader.train.total_batch_size = dataloader.train.total_batch_size
lvis_dataloader.train.num_workers = 0
lvis_dataloader.test.dataset.names = "rs_shapes_lvis_val"
lvis_dataloader.test.mapper.augmentations = dataloader.test.mapper.augmentations
lvis_dataloader.test.num_workers = 0
