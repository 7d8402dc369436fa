# Tiny from-scratch versions of the two-stage models for CPU tests and the demo: the backbone of
# tiny_backbone.py (ResNet-18 with BN, 64-channel FPN), smaller heads, 8 classes (the shapes
# dataset), smaller anchors and fewer proposals. The RS / stock differences stay exactly as in the
# full models.
from detectron2.layers import ShapeSpec

from .cascade_rcnn_fpn import model as cascade
from .faster_rcnn_fpn import model as faster
from .mask_rcnn_fpn import model as mask
from .rs_rcnn import rs_cascade_rcnn, rs_faster_rcnn, rs_mask_rcnn
from .tiny_backbone import CHANNELS, shrink_backbone

NUM_CLASSES = 8
FC_DIM = 256

for _m in (faster, mask, cascade, rs_faster_rcnn, rs_mask_rcnn, rs_cascade_rcnn):
    shrink_backbone(_m.backbone)
    _m.proposal_generator.head.in_channels = CHANNELS
    _m.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
    _m.proposal_generator.pre_nms_topk = (600, 300)
    _m.proposal_generator.post_nms_topk = (300, 300)
    _m.roi_heads.num_classes = NUM_CLASSES
    _box_heads = _m.roi_heads.box_heads if "box_heads" in _m.roi_heads else [_m.roi_heads.box_head]
    for _head in _box_heads:
        _head.input_shape = ShapeSpec(channels=CHANNELS, height=7, width=7)
        _head.fc_dims = [FC_DIM, FC_DIM]
    _predictors = (
        _m.roi_heads.box_predictors
        if "box_predictors" in _m.roi_heads
        else [_m.roi_heads.box_predictor]
    )
    for _predictor in _predictors:
        _predictor.input_shape = ShapeSpec(channels=FC_DIM)
        _predictor.test_topk_per_image = 20  # at most 4 objects per shapes image
        # Short CPU runs give low scores: keep the top 20 whatever their score (0.40 on COCO).
        _predictor.test_score_thresh = 0.0
    if _m.roi_heads.get("mask_head") is not None:
        _m.roi_heads.mask_head.input_shape = ShapeSpec(channels=CHANNELS, width=14, height=14)
        _m.roi_heads.mask_head.conv_dims = [CHANNELS, CHANNELS]

