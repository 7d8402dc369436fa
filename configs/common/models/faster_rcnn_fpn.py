# Stock Faster R-CNN R-50-FPN: the Mask R-CNN model without its mask branch (as the stock Faster
# R-CNN is the stock Mask R-CNN without it), and, as mmdetection's Faster R-CNN, without low-quality
# matches in the R-CNN head.
from .mask_rcnn_fpn import model

model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
model.roi_heads.proposal_matcher.allow_low_quality_matches = False
