# The generated shapes dataset (rs_detectron2.data; 8 classes, 240 train / 40 val images of
# 128-160 px, COCO format) for the tiny CPU configs: batch 4, no worker processes.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import dataloader

NUM_CLASSES = 8
TRAIN_IMAGES = 240

dataloader.train.dataset.names = "rs_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128, 144, 160), sample_style="choice", max_size=256),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "rs_shapes_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=160, max_size=256)
]
dataloader.test.num_workers = 0
