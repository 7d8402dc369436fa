# RS-Faster R-CNN R-50-FPN: RS-Mask R-CNN without its mask branch (as the stock Faster R-CNN is the
# stock Mask R-CNN without it), and without the R-CNN head's low-quality matches (the authors'
# Faster R-CNN config has none; their Mask R-CNN config has them).
from .rs_mask_rcnn_fpn import model

model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
model.roi_heads.proposal_matcher.allow_low_quality_matches = False
