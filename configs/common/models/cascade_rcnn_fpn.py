# Stock Cascade R-CNN R-50-FPN (boxes only), the baseline of RS-Cascade R-CNN, with two choices of
# the authors' mmdetection baseline: the RPN matcher of mask_rcnn_fpn.py (low-quality matches need
# IoU >= 0.3), and every stage trains on the exact ground-truth boxes added to its proposals
# (add_gt_as_proposals="every_stage"; Detectron2: "first", refined ground truths in stages 2-3).
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from rs_detectron2.modeling.matcher import MinIoULowQualityMatcher
from rs_detectron2.modeling.roi_heads import GTProposalCascadeROIHeads

model = get_config("common/models/cascade_rcnn.py").model
model.backbone.bottom_up.freeze_at = 2
model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
model.proposal_generator.anchor_matcher = L(MinIoULowQualityMatcher)(
    thresholds=[0.3, 0.7],
    labels=[0, -1, 1],
    allow_low_quality_matches=True,
    min_low_quality_iou=0.3,
)
model.roi_heads.update(_target_=GTProposalCascadeROIHeads, add_gt_as_proposals="every_stage")
