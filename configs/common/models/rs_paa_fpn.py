# RS-PAA R-50-FPN (Oksuz et al. 2021): RS-ATSS's head and anchors with PAA assignment (max-IoU 0.1
# candidates, top 9 per level by focal + GIoU loss, a two-component GMM split per GT) and PAA's
# score voting at test time over every candidate that entered NMS (the top 1000 anchors per level x
# classes above 0.05, clipped, as the authors' code votes). Optimiser: ../optim_dense.py.
from detectron2.config import LazyCall as L

from rs_detectron2.modeling import PAAAssigner

from .rs_atss_fpn import model

model.assigner = L(PAAAssigner)(iou_threshold=0.1, topk=9, focal_alpha=0.25, focal_gamma=2.0)
model.update(score_voting=True, score_voting_sigma=0.025)
