# COCO for SOLOv2-light 448 (the authors' light R-34 recipe): short side in
# {352, 384, ..., 512}, long side at most 768, horizontal flip; testing at 448 / 768; 32 images
# per batch. RGB input: the R-34 backbone starts from torchvision weights.
import math

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import TRAIN_IMAGES, dataloader

resize = dataloader.train.mapper.augmentations[0]
resize.short_edge_length = (352, 384, 416, 448, 480, 512)
resize.sample_style = "choice"
resize.max_size = 768
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.mapper.image_format = "RGB"
dataloader.train.total_batch_size = 32
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=448, max_size=768)
]

ITERS_PER_EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 3665
