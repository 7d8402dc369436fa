# Stock Faster R-CNN R-50-FPN: the Mask R-CNN model without its mask branch.
from .mask_rcnn_fpn import model

model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
