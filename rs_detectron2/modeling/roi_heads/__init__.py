from .cascade import GT_PROPOSAL_FIELD, GTProposalCascadeROIHeads
from .rs_fast_rcnn import RSFastRCNNOutputLayers
from .rs_mask_head import BOX_SCORE_FIELD, RSMaskRCNNConvUpsampleHead, rs_mask_loss
from .rs_roi_heads import RSCascadeROIHeads, RSStandardROIHeads, cap_instances

__all__ = [
    "BOX_SCORE_FIELD",
    "GT_PROPOSAL_FIELD",
    "GTProposalCascadeROIHeads",
    "RSFastRCNNOutputLayers",
    "RSMaskRCNNConvUpsampleHead",
    "rs_mask_loss",
    "RSCascadeROIHeads",
    "RSStandardROIHeads",
    "cap_instances",
]
