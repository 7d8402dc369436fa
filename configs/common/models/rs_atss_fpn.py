# RS-ATSS R-50-FPN (Oksuz et al. 2021): ATSS assignment (top 9 per level by centre distance,
# IoU >= mean + std, centre inside the box); the ATSS head (GN, 4 + 4 convs without bias, a
# learnable scale per level) without its centerness branch; 3 anchors per location (ratio 1, octave
# base scale 4, 3 scales per octave); P6 from P5 and P7 from P6 without a ReLU (mmdet
# add_extra_convs="on_output", relu_before_extra_convs=False); anchors on the batch padding
# ignored; at test time, per level the top 1000 anchors by their best class score, then every
# (anchor, class) above 0.05, boxes clipped to the image, NMS 0.6. Optimiser: ../optim_dense.py.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from rs_detectron2.modeling import ATSSAssigner, ScaledRetinaNetHead
from rs_detectron2.modeling.backbone import LastLevelP6P7NoReLU

from .rs_retinanet_fpn import model

FPN_STRIDES = [8, 16, 32, 64, 128]

model.backbone.top_block.update(
    _target_=LastLevelP6P7NoReLU, in_feature="p5", in_channels="${..out_channels}"
)
model.head = L(ScaledRetinaNetHead)(
    input_shape=[ShapeSpec(channels=256)] * len(FPN_STRIDES),
    num_classes="${..num_classes}",
    num_anchors=3,
    conv_dims=[256] * 4,
    norm="GN",
    prior_prob=0.01,
    tower_conv_bias=False,
)
model.anchor_generator = L(DefaultAnchorGenerator)(
    sizes=[[s * 4 * 2 ** (k / 3) for k in range(3)] for s in FPN_STRIDES],
    aspect_ratios=[1.0],
    strides=FPN_STRIDES,
    offset=0.0,
)
model.assigner = L(ATSSAssigner)(topk=9)
model.update(test_nms_thresh=0.6, candidate_selection="anchor", clip_boxes_before_nms=True)
