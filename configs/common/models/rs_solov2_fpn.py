# RS-SOLOv2 R-101-FPN (the RS paper's SOLOv2 experiments): SOLOv2 whose focal loss is replaced by
# RS over all grid cells x classes, with the soft Dice of each positive's mask as its quality,
# and whose Dice x 3 mask loss becomes a score-weighted Dice balanced to rank + sort. Overlapping
# objects: the first one keeps a cell. Test score threshold 0.2 (0.1 for the stock model).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling.solov2 import RSSOLOv2

from .solov2_fpn import model

model._target_ = RSSOLOv2

# RS replaces the focal loss
del model.focal_loss_alpha
del model.focal_loss_gamma
# the mask loss is balanced to rank + sort, not weighted
del model.mask_loss_weight

model.update(
    ranking_loss=L(RankSortLoss)(delta=0.5),
    first_come=True,
    # "paper": each positive's own Dice quality and score; "released": the authors' code's pairing
    pairing="paper",
    test_score_thresh=0.2,
)
