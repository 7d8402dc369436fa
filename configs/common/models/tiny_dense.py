# Tiny from-scratch versions of the dense models for CPU tests and the demo: the backbone of
# tiny_backbone.py (ResNet-18 with BN, 64-channel FPN) with P3-P7, heads of 2 convs x 64 channels
# (GN(32) in the ATSS / PAA heads), 8 classes (the shapes dataset). Anchors, assigners, box coders
# and NMS stay exactly as in the full models; as in tiny_rcnn.py, the test keeps the top 20
# detections whatever their score (short CPU runs give low scores; 0.05 and 100 detections on COCO).
from detectron2.layers import ShapeSpec

from .rs_dense import retinanet, rs_atss, rs_paa, rs_retinanet
from .tiny_backbone import CHANNELS, R18_RES5_CHANNELS, shrink_backbone

NUM_CLASSES = 8

for _m in (retinanet, rs_retinanet, rs_atss, rs_paa):
    shrink_backbone(_m.backbone)
    _m.num_classes = NUM_CLASSES
    _m.head.num_classes = NUM_CLASSES
    _m.head.input_shape = [ShapeSpec(channels=CHANNELS)] * 5
    _m.head.conv_dims = [CHANNELS, CHANNELS]
    _m.max_detections_per_image = 20  # at most 4 objects per shapes image
    _m.test_score_thresh = 0.0
    # P6 is computed from res5 (RetinaNet) or from P5 (ATSS / PAA, "on_output")
    _top = _m.backbone.top_block
    _top.in_channels = CHANNELS if _top.get("in_feature") == "p5" else R18_RES5_CHANNELS
