# Stock Detectron2 Mask R-CNN R-50-FPN (the model zoo's common model), baseline of RS-Mask R-CNN,
# with the matchers of the authors' mmdetection baseline (whose numbers the paper compares with):
# an RPN low-quality match needs IoU >= 0.3 and goes to that ground truth, and the R-CNN
# head re-assigns each ground truth's best proposal to it (Detectron2's zoo numbers come with
# Detectron2's Matcher: set allow_low_quality_matches / min_low_quality_iou to get it back).
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from rs_detectron2.modeling.matcher import MinIoULowQualityMatcher

model = get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
model.proposal_generator.anchor_matcher = L(MinIoULowQualityMatcher)(
    thresholds=[0.3, 0.7],
    labels=[0, -1, 1],
    allow_low_quality_matches=True,
    min_low_quality_iou=0.3,
)
model.roi_heads.proposal_matcher = L(MinIoULowQualityMatcher)(
    thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=True, min_low_quality_iou=0.5
)
