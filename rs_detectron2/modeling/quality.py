"""The continuous labels of RS: the localisation quality of each positive."""

import torch

from ..losses import aligned_iou

__all__ = ["MIN_POSITIVE_QUALITY", "regression_quality"]

# The quality target of a positive whose regressed box misses its ground truth entirely. The
# authors' code turns such a positive (IoU exactly 0) into a negative; we keep it a positive that
# ranks below every other positive.
MIN_POSITIVE_QUALITY = 1e-6


@torch.no_grad()
def regression_quality(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """RS continuous label of positives: IoU of each regressed box with its ground truth.

    Args:
        pred_boxes, gt_boxes: (P, 4) XYXY boxes in the same coordinates (detached here).
    Returns:
        (P,) float32 qualities in [MIN_POSITIVE_QUALITY, 1].
    """
    iou = aligned_iou(pred_boxes.detach().float(), gt_boxes.detach().float())
    return iou.clamp(min=MIN_POSITIVE_QUALITY, max=1.0)
