# RS-YOLACT R-50-FPN at 550 x 550 (the RS authors' ranksort_yolact_r50_55e_coco.py): YOLACT's
# network with sigmoid classification (no background logit) and no semantic head, trained with RS
# over all images x anchors x classes, score-weighted GIoU and 1 - Dice mask losses balanced to
# rank + sort; no OHEM and no cap on the masks per image.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling.yolact import RSYOLACT

from .yolact_fpn import model

model._target_ = RSYOLACT

# RS-YOLACT has no semantic-segmentation loss
del model.semantic_head
del model.semantic_loss_weight
# RS ranks every anchor: no OHEM
del model.neg_pos_ratio
# the box and mask losses are balanced to rank + sort, not weighted
del model.box_loss_weight
del model.mask_loss_weight
# every positive trains its mask: no cap
del model.max_masks_per_image

model.ranking_loss = L(RankSortLoss)(delta=0.5)
# sigmoid classification: no background logit
model.head.background = False
