"""Tiny from-scratch YOLACT / RS-YOLACT for CPU tests and quick experiments (the counterpart of
:mod:`rs_detectron2.model_zoo.tiny` for YOLACT, whose head, protonet and fixed-size input need
their own settings).

    from rs_detectron2.model_zoo.tiny_yolact import tiny_yolact, tiny_yolact_data
    from ..common.models.rs_yolact_fpn import model
    model = tiny_yolact(model, num_classes=8)
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..data import SSDDatasetMapper, ssd_augmentations
from ..modeling.yolact import pyramid_strides
from .tiny import TINY_CHANNELS, tiny_backbone

__all__ = ["TINY_IMAGE_SIZE", "tiny_yolact", "tiny_yolact_data"]

#: side of the square input of the tiny configs (the shapes images are 128-160 px)
TINY_IMAGE_SIZE = 160
_TEST_TOPK = 20  # the shapes images hold at most 4 objects


def tiny_yolact(model, num_classes: int, image_size: int = TINY_IMAGE_SIZE):
    """Shrink a YOLACT / RS-YOLACT model config in place: ResNet-18 (BN) under a 64-channel FPN,
    64-channel head and protonet, anchors for a ``image_size`` square input, and test settings for
    short CPU runs (the top 20 detections whatever their score). What makes a model RS is left as
    in the full model.

    Args:
        model: the LazyConfig node of a ``YOLACT`` or ``RSYOLACT``.
        num_classes: the number of classes of the data (set on ``model.num_classes`` only).
        image_size: side of the square network input.
    Returns:
        the same node.
    """
    tiny_backbone(model.backbone)
    model.num_classes = num_classes
    model.head.update(in_channels=TINY_CHANNELS, conv_dim=TINY_CHANNELS)
    model.protonet.update(in_channels=TINY_CHANNELS, conv_dim=TINY_CHANNELS)
    if model.get("semantic_head") is not None:
        model.semantic_head.in_channels = TINY_CHANNELS
    model.anchor_generator.update(
        sizes=[[16], [32], [64], [128], [256]], strides=pyramid_strides(image_size)
    )
    model.update(
        max_detections_per_image=_TEST_TOPK, test_score_thresh=0.0, test_topk_candidates=200
    )
    return model


def tiny_yolact_data(dataloader, image_size: int = TINY_IMAGE_SIZE):
    """YOLACT's SSD-style training data at a ``image_size`` square on a tiny dataloader config
    (``configs/common/data/shapes.py``), edited in place; testing at the same square.

    Args:
        dataloader: the ``dataloader`` LazyConfig node.
        image_size: side of the square network input.
    Returns:
        the same node.
    """
    pixel_mean = [123.68, 116.78, 103.94]  # RGB, as the YOLACT configs
    dataloader.train.mapper = L(SSDDatasetMapper)(
        is_train=True,
        image_format="RGB",
        use_instance_mask=True,
        instance_mask_format="bitmask",
        min_box_size=4,
        augmentations=L(ssd_augmentations)(
            image_size=(image_size, image_size), pixel_mean=pixel_mean, image_format="RGB"
        ),
    )
    dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(image_size, image_size))]
    return dataloader
