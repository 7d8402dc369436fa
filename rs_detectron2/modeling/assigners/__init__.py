"""Anchor assigners of the dense RS detectors: small callables with one job.

Each is an :class:`AnchorAssigner`, called per image as ``assigner(anchors,
num_anchors_per_level, gt_instances, pred_logits=None, pred_boxes=None)``; it returns
``(matched_idxs, labels)``: for each of the R anchors, the index of its GT (meaningful where the
label is 1) and a label in {1, 0, -1} (positive, negative, ignored). ``uses_predictions`` says
whether the image's predictions (the (R, K) logits and decoded (R, 4) boxes) must be passed (PAA
only). A yacs config names its assigner in ``MODEL.RS.DENSE.ASSIGNER`` (:data:`ASSIGNER_REGISTRY`).

The assigners: :class:`IoUAssigner` (RetinaNet's max-IoU rule), :class:`ATSSAssigner`,
:class:`PAAAssigner` and :class:`FCOSAssigner` (FCOS's points: centre sampling, size ranges per
level, the smallest box wins).
"""

from .atss import ATSSAssigner
from .base import AnchorAssigner
from .build import ASSIGNER_REGISTRY, build_assigner
from .fcos import FCOSAssigner
from .iou import IoUAssigner
from .paa import GaussianMixture1D, PAAAssigner, fit_gmm_1d, paa_anchor_scores, paa_split

__all__ = [
    "ASSIGNER_REGISTRY",
    "build_assigner",
    "AnchorAssigner",
    "IoUAssigner",
    "ATSSAssigner",
    "PAAAssigner",
    "FCOSAssigner",
    "GaussianMixture1D",
    "fit_gmm_1d",
    "paa_split",
    "paa_anchor_scores",
]
