# COCO for SOLOv2 (the authors' 3x recipe): multi-scale training, short side in
# {640, 672, ..., 800}, long side at most 1333, horizontal flip; testing at 800 / 1333; 16 images
# per batch. Masks as bitmasks (the grid targets read the masks' centres of mass).
import math

from .coco import TRAIN_IMAGES, dataloader

resize = dataloader.train.mapper.augmentations[0]
resize.short_edge_length = (640, 672, 704, 736, 768, 800)
resize.sample_style = "choice"
resize.max_size = 1333
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.total_batch_size = 16

ITERS_PER_EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 7330
