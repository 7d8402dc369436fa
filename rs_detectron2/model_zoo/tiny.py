"""Tiny from-scratch versions of the shipped models, for CPU tests, the demo and quick experiments.

Each function takes the LazyConfig node of a full model (``model`` of a config in
``configs/common/models/``) and shrinks it in place: ResNet-18 with BN (FrozenBN from scratch
diverges) under a 64-channel FPN, smaller heads, fewer proposals, and test settings for short CPU
runs (the top 20 detections whatever their score). What makes a model RS (heads, losses,
assigners, box coders, NMS) is left exactly as in the full model. The class count is set on the
top-level key only (``model.roi_heads.num_classes`` / ``model.num_classes``): the configs link
every head's class count to it.

    from rs_detectron2.model_zoo.tiny import tiny_two_stage
    from ..common.models.rs_mask_rcnn_fpn import model
    model = tiny_two_stage(model, num_classes=8)
"""

from detectron2.layers import ShapeSpec

__all__ = ["TINY_CHANNELS", "tiny_backbone", "tiny_one_stage", "tiny_two_stage"]

TINY_CHANNELS = 64
_R18_RES5_CHANNELS = 512
_FC_DIM = 256
_TEST_TOPK = 20  # the shapes images hold at most 4 objects


def tiny_backbone(backbone):
    """Shrink the FPN over ResNet-50 of a full model's config to ResNet-18 (BN) + 64-channel FPN.

    Args:
        backbone: the ``model.backbone`` LazyConfig node (an FPN over a ResNet), edited in place.
    Returns:
        the same node.
    """
    bottom_up = backbone.bottom_up
    bottom_up.freeze_at = 0
    bottom_up.stem.norm = "BN"
    bottom_up.stages.update(depth=18, norm="BN")
    bottom_up.stages.pop("stride_in_1x1")  # ResNet-18 has no bottleneck blocks
    backbone.out_channels = TINY_CHANNELS
    top_block = backbone.get("top_block")
    # P6 from res5 (RetinaNet) takes ResNet-18's res5 channels; from P5 (ATSS, FCOS) the FPN's,
    # linked (Detectron2's FCOS config writes 256)
    if top_block is not None and "in_channels" in top_block:
        if top_block.get("in_feature", "res5") == "res5":
            top_block.in_channels = _R18_RES5_CHANNELS
        else:
            top_block.in_channels = "${..out_channels}"
    return backbone


def tiny_two_stage(model, num_classes: int):
    """Shrink a Faster / Mask / Cascade R-CNN model config (stock or RS) in place.

    Args:
        model: the LazyConfig node of a ``GeneralizedRCNN``.
        num_classes: the number of classes of the data.
    Returns:
        the same node.
    """
    tiny_backbone(model.backbone)
    rpn = model.proposal_generator
    rpn.head.in_channels = TINY_CHANNELS
    rpn.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
    rpn.update(pre_nms_topk=(600, 300), post_nms_topk=(300, 300))
    heads = model.roi_heads
    heads.num_classes = num_classes
    for box_head in heads.get("box_heads") or [heads.box_head]:
        box_head.update(input_shape=ShapeSpec(channels=TINY_CHANNELS, height=7, width=7))
        box_head.fc_dims = [_FC_DIM, _FC_DIM]
    for predictor in heads.get("box_predictors") or [heads.box_predictor]:
        predictor.input_shape = ShapeSpec(channels=_FC_DIM)
        # short CPU runs give low scores: keep the top 20 whatever their score
        predictor.update(test_topk_per_image=_TEST_TOPK, test_score_thresh=0.0)
    if heads.get("mask_head") is not None:
        heads.mask_head.input_shape = ShapeSpec(channels=TINY_CHANNELS, width=14, height=14)
        heads.mask_head.conv_dims = [TINY_CHANNELS, TINY_CHANNELS]
    return model


def tiny_one_stage(model, num_classes: int):
    """Shrink a dense model config (stock RetinaNet and FCOS, RS-RetinaNet, RS-ATSS, RS-PAA,
    RS-FCOS) in place: P3-P7 of the tiny backbone, heads of 2 convs x 64 channels.

    Args:
        model: the LazyConfig node of a ``RetinaNet``, ``FCOS`` or ``RSDenseDetector``.
        num_classes: the number of classes of the data.
    Returns:
        the same node.
    """
    tiny_backbone(model.backbone)
    model.num_classes = num_classes
    model.head.input_shape = [ShapeSpec(channels=TINY_CHANNELS)] * len(model.head.input_shape)
    model.head.conv_dims = [TINY_CHANNELS, TINY_CHANNELS]
    # short CPU runs give low scores: keep the top 20 whatever their score
    model.update(max_detections_per_image=_TEST_TOPK, test_score_thresh=0.0)
    return model
