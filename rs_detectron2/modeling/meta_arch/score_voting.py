"""Score voting (PAA, Kim & Lee 2020): refine each detection box by its overlapping candidates."""

import torch

from detectron2.structures import Instances, pairwise_iou

__all__ = ["score_voting"]


@torch.no_grad()
def score_voting(
    detections: Instances, candidates: Instances, sigma: float = 0.025, min_iou: float = 0.01
) -> torch.Tensor:
    """Replace each kept detection's box by a weighted mean of the candidate boxes around it.

    For detection d and every candidate c of the same class with IoU(d, c) > ``min_iou``, the
    weight is ``exp(-(1 - IoU)^2 / sigma) * score_c`` (mmdet ``PAAHead.score_voting``; the
    candidates are all boxes that entered NMS). Scores and classes are not changed. A detection
    with no such candidate (impossible when the detections are among the candidates) keeps its box.
    Computed in float32 with autocast off (a half-precision weighted sum of pixel coordinates
    loses whole pixels and can overflow).

    Args:
        detections: D boxes kept by NMS: ``pred_boxes`` (XYXY) and ``pred_classes`` (D,).
        candidates: C boxes: ``pred_boxes``, ``scores`` (C,) and ``pred_classes`` (C,).
        sigma: width of the IoU weighting (0.025 in PAA).
        min_iou: candidates must overlap the detection by more than this.
    Returns:
        (D, 4) voted boxes, same dtype as ``detections.pred_boxes.tensor``.
    """
    det_boxes = detections.pred_boxes.tensor
    if len(det_boxes) == 0 or len(candidates) == 0:
        return det_boxes.clone()
    with torch.autocast(det_boxes.device.type, enabled=False):
        cand_boxes = candidates.pred_boxes.tensor.float()
        iou = pairwise_iou(detections.pred_boxes, candidates.pred_boxes).float()  # (D, C)
        related = (iou > min_iou) & (
            detections.pred_classes[:, None] == candidates.pred_classes[None, :]
        )
        weights = torch.exp(-((1.0 - iou) ** 2) / sigma) * candidates.scores.float()[None, :]
        weights = torch.where(related, weights, torch.zeros_like(weights))
        total = weights.sum(dim=1, keepdim=True)
        voted = weights @ cand_boxes / total.clamp(min=torch.finfo(torch.float32).tiny)
        voted = torch.where(total > 0, voted, det_boxes.float())
    return voted.to(det_boxes.dtype)
