# RS-YOLACT R-50-FPN at 550 x 550 (the RS authors' ranksort_yolact_r50_55e_coco.py): YOLACT's
# network with sigmoid classification (no background logit) and no semantic head, trained with RS
# over all images x anchors x classes, score-weighted GIoU and 1 - Dice mask losses balanced to
# rank + sort; no OHEM and no cap on the masks per image.
from detectron2.config import LazyCall as L

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.modeling.yolact import RSYOLACT

from .yolact_fpn import model

# RS replaces every stock loss and its options.
for key in (
    "semantic_head",
    "neg_pos_ratio",
    "box_loss_weight",
    "mask_loss_weight",
    "semantic_loss_weight",
    "max_masks_per_image",
):
    model.pop(key)
model.update(_target_=RSYOLACT, ranking_loss=L(RankSortLoss)(delta=0.5))
model.head.background = False
