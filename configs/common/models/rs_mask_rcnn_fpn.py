# RS-Mask R-CNN R-50-FPN (Oksuz et al. 2021): the stock model with RS heads swapped in, arguments
# kept. RS-RPN: RS over every anchor (no sampling), score-weighted GIoU, all x 0.2, box coder
# weights (10, 10, 5, 5). RS R-CNN: a sigmoid K-way classifier ranked over every proposal x class
# (no RoI sampling), class-specific score-weighted GIoU, test score threshold 0.40, NMS 0.5. Mask
# head: score-weighted Dice on at most 200 RoIs per batch. Every box and mask loss is balanced to
# its head's rank + sort by the RankSortLoss each head takes. As the authors' code: anchors on the
# batch padding are ignored, and the matchers of mask_rcnn_fpn.py (RPN low-quality matches at
# IoU >= 0.3; the R-CNN head's low-quality matches of mmdetection's Mask R-CNN).
from detectron2.config import LazyCall as L

from rs_detectron2.config import NO_SAMPLING
from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling import (
    RSRPN,
    RSFastRCNNOutputLayers,
    RSMaskRCNNConvUpsampleHead,
    RSStandardROIHeads,
)

from .mask_rcnn_fpn import model

model.proposal_generator.update(
    _target_=RSRPN,
    ranking_loss=L(RankSortLoss)(delta=0.5),
    loss_weight=0.2,
    ignore_padding_anchors=True,
)
model.proposal_generator.box2box_transform.weights = (10.0, 10.0, 5.0, 5.0)
model.roi_heads.update(
    _target_=RSStandardROIHeads, batch_size_per_image=NO_SAMPLING, max_masks_per_batch=200
)
model.roi_heads.box_predictor.update(
    _target_=RSFastRCNNOutputLayers,
    ranking_loss=L(RankSortLoss)(delta=0.5),
    test_score_thresh=0.4,
    test_nms_thresh=0.5,
)
model.roi_heads.mask_head._target_ = RSMaskRCNNConvUpsampleHead
