"""Tiny from-scratch SOLOv2 / RS-SOLOv2 for CPU tests and quick experiments (see
:mod:`rs_detectron2.model_zoo.tiny` for the other families).

    from rs_detectron2.model_zoo.tiny_solov2 import tiny_solov2
    from ..common.models.rs_solov2_fpn import model
    model = tiny_solov2(model, num_classes=8)
"""

from detectron2.layers import ShapeSpec

from .tiny import TINY_CHANNELS, tiny_backbone

__all__ = ["TINY_SOLOV2_GRIDS", "TINY_SOLOV2_SCALE_RANGES", "tiny_solov2"]

# Grids and scale ranges for images of 128-256 px whose objects are 20-100 px across.
TINY_SOLOV2_GRIDS = [16, 12, 8, 6, 4]
TINY_SOLOV2_SCALE_RANGES = [[1, 32], [16, 64], [32, 128], [64, 256], [128, 512]]
_TEST_TOPK = 20


def tiny_solov2(model, num_classes: int):
    """Shrink a SOLOv2 / RS-SOLOv2 model config in place: ResNet-18 (BN) + 64-channel FPN, an
    instance head of 2 convs x 64 on smaller grids, 64-channel kernels, 32-channel mask-feature
    convs; at test time the top 20 masks whatever their score. What makes a model RS (its class,
    ranking loss, cell assignment) is left as in the full model.

    Args:
        model: the LazyConfig node of a ``SOLOv2`` or ``RSSOLOv2``.
        num_classes: the number of classes of the data (set on ``model.num_classes`` only; the
            head follows it).
    Returns:
        the same node.
    """
    tiny_backbone(model.backbone)
    model.num_classes = num_classes
    model.head.update(
        input_shape=[ShapeSpec(channels=TINY_CHANNELS)] * 5,
        num_grids=TINY_SOLOV2_GRIDS,
        num_convs=2,
        conv_dims=TINY_CHANNELS,
        num_kernels=TINY_CHANNELS,
    )
    model.mask_head.update(input_shape=[ShapeSpec(channels=TINY_CHANNELS)] * 4, conv_dims=32)
    model.scale_ranges = TINY_SOLOV2_SCALE_RANGES
    # short CPU runs give low scores: keep the top 20 whatever their score
    model.update(test_score_thresh=0.0, test_update_thresh=0.0, max_detections_per_image=_TEST_TOPK)
    return model
