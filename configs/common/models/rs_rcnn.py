# RS versions of the two-stage models (spec 3.1-3.4, 7): each swaps classes and keeps arguments.
#
# RS-RPN: RS on objectness over all anchors (no sampling), GIoU x score, balanced, all x 0.2,
#   box coder weights (10, 10, 5, 5) instead of (1, 1, 1, 1).
# RS R-CNN: sigmoid K-way classifier, RS over every proposal (+ GT) x class (no sampling),
#   class-specific GIoU x score, balanced; test score threshold 0.40, NMS 0.5, 100 detections.
# RS mask head: score-weighted Dice balanced to the box stage's rank + sort, <= 200 RoIs / batch.
# RS-Cascade: three RS stages (class-agnostic, weights (10, 10, 5, 5) each, no 1/3 gradient
#   scaling, stage weights 1), logits averaged at test time, RPN anchors must lie inside the image.
from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransform

from rs_detectron2.modeling import (
    RSRPN,
    RSCascadeROIHeads,
    RSFastRCNNOutputLayers,
    RSMaskRCNNConvUpsampleHead,
    RSStandardROIHeads,
)

from .cascade_rcnn_fpn import model as _cascade
from .faster_rcnn_fpn import model as _faster
from .mask_rcnn_fpn import model as _mask

NO_SAMPLING = 1_000_000_000  # a per-image RoI "sample size" larger than any proposal count

for _model in (_faster, _mask, _cascade):
    _model.proposal_generator.update(_target_=RSRPN, loss_weight=0.2, delta=0.5)
    _model.proposal_generator.box2box_transform.weights = (10.0, 10.0, 5.0, 5.0)
    _model.roi_heads.batch_size_per_image = NO_SAMPLING

for _model in (_faster, _mask):
    _model.roi_heads._target_ = RSStandardROIHeads
    _model.roi_heads.max_masks_per_batch = 200
    _model.roi_heads.box_predictor.update(
        _target_=RSFastRCNNOutputLayers, test_score_thresh=0.4, test_nms_thresh=0.5, delta=0.5
    )
_mask.roi_heads.mask_head._target_ = RSMaskRCNNConvUpsampleHead

_cascade.roi_heads._target_ = RSCascadeROIHeads
_cascade.proposal_generator.anchor_boundary_thresh = 0
for _predictor in _cascade.roi_heads.box_predictors:
    _predictor.update(
        _target_=RSFastRCNNOutputLayers,
        box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
        test_score_thresh=0.4,
        test_nms_thresh=0.5,
        delta=0.5,
    )

rs_faster_rcnn = _faster
rs_mask_rcnn = _mask
rs_cascade_rcnn = _cascade
