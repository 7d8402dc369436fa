# COCO at 512 x 512 with SSD-style augmentation, the aLRP / AP Loss papers' RetinaNet recipe:
# photometric distortion, expand (canvas 1-4x, p 0.5), min-IoU random crop, resize to 512 x 512
# without keeping the aspect ratio, flip; testing at 500 px (longer side at most 833); 32 images
# per batch (8 per GPU x 4).
import math

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from rs_detectron2.data import SSDDatasetMapper, ssd_augmentations

from .coco import TRAIN_IMAGES, dataloader

dataloader.train.mapper = L(SSDDatasetMapper)(
    is_train=True,
    image_format="BGR",
    use_instance_mask=False,
    # Detectron2's MSRA ResNet-50 input: BGR with this mean (the canvas of Expand)
    augmentations=L(ssd_augmentations)(
        image_size=(512, 512), pixel_mean=[103.530, 116.280, 123.675], image_format="BGR"
    ),
)
dataloader.train.total_batch_size = 32
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=500, max_size=833)
]

ITERS_PER_EPOCH = math.ceil(TRAIN_IMAGES / dataloader.train.total_batch_size)  # 3665
