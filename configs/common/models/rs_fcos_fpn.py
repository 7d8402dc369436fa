# RS-FCOS R-50-FPN: the RS dense detector on FCOS's points. The authors configured it
# (ranksort_fcos_r50_caffe_fpn_gn-head_4x4_1x_coco.py) but never released its head; this builds
# it from public pieces on the stock FCOS (fcos_fpn.py: backbone, classes, pixel statistics):
# - points: one square anchor of side = stride per location, centred on (i + 0.5) x stride, as
#   Detectron2's FCOS represents them, decoded by its box coder (distances to the four sides in
#   strides, through a ReLU; mmdetection's norm_on_bbox);
# - FCOSAssigner: Detectron2 FCOS's rule (centre sampling within 1.5 strides, sizes (0, 64),
#   (64, 128), ..., (512, inf) on P3-P7, the smallest box wins, nothing ignored). The authors'
#   config names a MaxIoUAssigner that mmdetection's FCOS head never reads; every point is
#   labelled, those on the batch padding too (FCOS heads have no valid flags);
# - head: the authors' GN head (mmdetection's FCOSHead) without centerness, which RS's IoU
#   targets replace as in RS-ATSS: 4 + 4 GN convs without bias (mmcv drops the bias a norm
#   follows) and a learnable scale per level (mmdetection's Scale; Detectron2's FCOS has none),
#   prior 0.01;
# - RS over all images x points x classes, a positive's target the IoU of its regressed box;
#   GIoU weighted by the detached score, balanced to rank + sort;
# - test: per level the top 1000 points by their best class score, then every (point, class)
#   above 0.05, boxes clipped, NMS 0.6 (RS-ATSS's and the authors' later RS-FCOS config's; the
#   gn-head file keeps stock mmdetection FCOS's 0.5), 100 detections.
# Backbone as Detectron2's FCOS: P6 from P5, P7 from ReLU(P6) (the authors' config too).
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransformLinear

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling import FCOSAssigner, RSDenseDetector, ScaledRetinaNetHead

from .fcos_fpn import model

FPN_STRIDES = [8, 16, 32, 64, 128]

model._target_ = RSDenseDetector
# RS replaces the focal loss
del model.focal_loss_alpha
del model.focal_loss_gamma

model.head = L(ScaledRetinaNetHead)(
    input_shape=[ShapeSpec(channels=256)] * len(FPN_STRIDES),
    num_classes="${..num_classes}",
    num_anchors=1,
    conv_dims=[256] * 4,
    norm="GN",
    prior_prob=0.01,
    tower_conv_bias=False,
)
model.anchor_generator = L(DefaultAnchorGenerator)(
    sizes=[[s] for s in FPN_STRIDES], aspect_ratios=[1.0], strides=FPN_STRIDES, offset=0.5
)
model.update(
    box2box_transform=L(Box2BoxTransformLinear)(normalize_by_size=True),
    assigner=L(FCOSAssigner)(center_sampling_radius=1.5, size_range=[4.0, 8.0]),
    ranking_loss=L(RankSortLoss)(delta=0.5),
    ignore_padding_anchors=False,
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    candidate_selection="anchor",
    clip_boxes_before_nms=True,
    input_format="BGR",
)
