# Dense (one-stage) detectors: the stock Detectron2 RetinaNet R-50-FPN and its RS versions
# (spec 2, 3.6, 3.7). Every RS model is RSRetinaNet: a RetinaNet whose losses are RS over all
# images x anchors x classes plus score-weighted GIoU balanced to rank + sort, with sigmoid scores
# at test time and no centerness / IoU factor. The RS models differ only in what is listed here.
#
# rs_retinanet: Detectron2's RetinaNet head and 9 anchors, IoU assignment [0.4, 0.5] with
#   low-quality matches, NMS 0.5. (The authors released no RS-RetinaNet config, spec 3.10.)
# rs_atss, rs_paa: GN head (4 + 4 convs) with a learnable scale per level and no centerness / IoU
#   branch; 3 anchors per location (ratio 1, octave base scale 4, 3 scales per octave); P6 and P7
#   computed from P5 (mmdet add_extra_convs="on_output"); NMS 0.6.
#   rs_atss: ATSS assignment (top 9 per level by centre distance, IoU >= mean + std, centre in box).
#   rs_paa: PAA assignment (max-IoU 0.1 candidates, top 9 per level by focal + GIoU loss, a
#   two-component GMM split per GT) and score voting at test time.
# Every RS model uses box coder weights (10, 10, 5, 5) (mmdet stds (0.1, 0.1, 0.2, 0.2), which
# every RS head uses); the stock RetinaNet keeps (1, 1, 1, 1) and its smooth-L1 loss.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform

from rs_detectron2.modeling import (
    ATSSAssigner,
    IoUAssigner,
    PAAAssigner,
    RSRetinaNet,
    ScaledRetinaNetHead,
)

FPN_STRIDES = [8, 16, 32, 64, 128]
FPN_CHANNELS = 256


def _stock_retinanet():
    """A fresh copy of Detectron2's RetinaNet R-50-FPN (model zoo), backbone frozen up to res2."""
    model = get_config("common/models/retinanet.py").model
    model.backbone.bottom_up.freeze_at = 2
    model.head.num_classes = model.num_classes  # no relative interpolation
    return model


def _rs(model, assigner, nms_thresh):
    """Turn a stock RetinaNet config into an RSRetinaNet one, in place."""
    for key in ("anchor_matcher", "focal_loss_alpha", "focal_loss_gamma"):
        model.pop(key, None)
    model.update(
        _target_=RSRetinaNet,
        assigner=assigner,
        delta=0.5,
        box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
        test_score_thresh=0.05,
        test_topk_candidates=1000,
        test_nms_thresh=nms_thresh,
        max_detections_per_image=100,
    )
    return model


def _atss_style(model):
    """ATSS / PAA head, anchors and FPN extra levels (the authors' RS-ATSS / RS-PAA), in place."""
    model.backbone.top_block.update(in_feature="p5", in_channels=FPN_CHANNELS)
    model.head = L(ScaledRetinaNetHead)(
        input_shape=[ShapeSpec(channels=FPN_CHANNELS)] * len(FPN_STRIDES),
        num_classes=model.num_classes,
        num_anchors=3,
        conv_dims=[FPN_CHANNELS] * 4,
        norm="GN",
        prior_prob=0.01,
    )
    model.anchor_generator = L(DefaultAnchorGenerator)(
        sizes=[[s * 4 * 2 ** (k / 3) for k in range(3)] for s in FPN_STRIDES],
        aspect_ratios=[1.0],
        strides=FPN_STRIDES,
        offset=0.0,
    )
    return model


retinanet = _stock_retinanet()

rs_retinanet = _rs(
    _stock_retinanet(),
    L(IoUAssigner)(thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True),
    nms_thresh=0.5,
)

rs_atss = _rs(_atss_style(_stock_retinanet()), L(ATSSAssigner)(topk=9), nms_thresh=0.6)

rs_paa = _rs(
    _atss_style(_stock_retinanet()),
    L(PAAAssigner)(iou_threshold=0.1, topk=9, focal_alpha=0.25, focal_gamma=2.0),
    nms_thresh=0.6,
)
rs_paa.update(score_voting=True, score_voting_sigma=0.025)
