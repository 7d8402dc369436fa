# COCO for YOLACT at 550 x 550 (the RS authors' YOLACT recipe): boxes under 4 px dropped,
# photometric distortion, expand (canvas 1-4x filled with the mean, p 0.5), min-IoU random crop,
# resize to 550 x 550 without keeping the aspect ratio, flip; RGB; bitmask targets; testing at
# 550 x 550 too (detections are returned at the original size). 32 images per batch (8 per GPU x
# 4; keep 8 per GPU, or use the global ranking pool, to rank the authors' pool).
import math

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from rs_detectron2.data import SSDDatasetMapper, ssd_augmentations

from .coco import TRAIN_IMAGES, dataloader

IMAGE_SIZE = 550
PIXEL_MEAN_RGB = [123.68, 116.78, 103.94]

dataloader.train.mapper = L(SSDDatasetMapper)(
    is_train=True,
    image_format="RGB",
    use_instance_mask=True,
    instance_mask_format="bitmask",
    min_box_size=4,
    augmentations=L(ssd_augmentations)(
        image_size=(IMAGE_SIZE, IMAGE_SIZE), pixel_mean=PIXEL_MEAN_RGB, image_format="RGB"
    ),
)
dataloader.train.total_batch_size = 32
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(IMAGE_SIZE, IMAGE_SIZE))]

ITERS_PER_EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 3665
