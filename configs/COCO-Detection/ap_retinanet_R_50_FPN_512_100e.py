# AP Loss RetinaNet R-50-FPN on the aLRP paper's 512 px recipe (alrp_retinanet_R_50_FPN_512_100e.py)
# with LR 0.002. One known difference: the authors' box loss is smooth L1 on the deltas; ours is
# 2 x score-weighted GIoU on the decoded boxes (the heads hand decoded boxes to the ranking loss).
# Reported: 35.4 box AP on minival (aLRP README, 500 px test).
from detectron2.config import LazyCall as L

from rs_detectron2.losses import APLoss

from .alrp_retinanet_R_50_FPN_512_100e import dataloader, lr_multiplier, model, optimizer, train

model.ranking_loss = L(APLoss)(delta=1.0, box_weight=2.0)
optimizer.lr = 0.002
