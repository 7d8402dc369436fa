# RS-RetinaNet R-50-FPN: RetinaNet's head, 9 anchors and IoU assignment ([0.4, 0.5], low-quality
# matches) trained with RS over all images x anchors x classes plus score-weighted GIoU balanced to
# rank + sort; sigmoid scores at test, NMS 0.5. The authors released no RS-RetinaNet config; box
# coder weights (10, 10, 5, 5) as every RS head. Anchors on the batch padding are ignored
# (mmdetection's anchor heads); test-time candidates as the stock RetinaNet (Detectron2's).
from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransform

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling import IoUAssigner, RSDenseDetector

from .retinanet_fpn import model

model._target_ = RSDenseDetector

# the assigner replaces the anchor matcher
del model.anchor_matcher
# RS replaces the focal loss
del model.focal_loss_alpha
del model.focal_loss_gamma

model.update(
    assigner=L(IoUAssigner)(
        thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True
    ),
    ranking_loss=L(RankSortLoss)(delta=0.5),
    box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.5,
    max_detections_per_image=100,
    ignore_padding_anchors=True,
    candidate_selection="pair",
    clip_boxes_before_nms=False,
)
