# RS-Cascade R-CNN R-50-FPN (boxes only): RS-RPN as in RS-Mask R-CNN, three RS stages (class-
# agnostic, box coder weights (10, 10, 5, 5) each, stage losses summed with weight 1, no 1/3
# gradient scaling), stage logits averaged at test time; RPN anchors must lie inside the image.
# Every stage trains on the exact ground-truth boxes added to its proposals (cascade_rcnn_fpn.py).
from detectron2.config import LazyCall as L
from detectron2.modeling.box_regression import Box2BoxTransform

from rs_detectron2.config import NO_SAMPLING
from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling import RSRPN, RSCascadeROIHeads, RSFastRCNNOutputLayers

from .cascade_rcnn_fpn import model

model.proposal_generator.update(
    _target_=RSRPN,
    ranking_loss=L(RankSortLoss)(delta=0.5),
    loss_weight=0.2,
    anchor_boundary_thresh=0,
    ignore_padding_anchors=True,
)
model.proposal_generator.box2box_transform.weights = (10.0, 10.0, 5.0, 5.0)
model.roi_heads.update(_target_=RSCascadeROIHeads, batch_size_per_image=NO_SAMPLING)
for predictor in model.roi_heads.box_predictors:
    predictor.update(
        _target_=RSFastRCNNOutputLayers,
        ranking_loss=L(RankSortLoss)(delta=0.5),
        box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
        test_score_thresh=0.4,
        test_nms_thresh=0.5,
    )
