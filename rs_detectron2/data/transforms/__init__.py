"""SSD-style augmentations as Detectron2 augmentations (photometric distortion, expand, min-IoU
crop) and the mapper that runs them, for the YOLACT and aLRP 512 px recipes (docs/models.md). The
fixed-size resize that ignores the aspect ratio is Detectron2's ``T.Resize((h, w))``."""

from .geometry import (
    ClipCropTransform,
    Expand,
    ExpandTransform,
    MinIoURandomCrop,
    box_centres_inside,
    clip_polygon,
)
from .mapper import SSDDatasetMapper, centres_inside_image, ssd_augmentations
from .photometric import PhotometricDistortion, PhotometricTransform

__all__ = [
    "ClipCropTransform",
    "Expand",
    "ExpandTransform",
    "MinIoURandomCrop",
    "PhotometricDistortion",
    "PhotometricTransform",
    "SSDDatasetMapper",
    "box_centres_inside",
    "centres_inside_image",
    "clip_polygon",
    "ssd_augmentations",
]
