"""Score voting (PAA, Kim & Lee 2020): refine each detection box by its overlapping candidates."""

import torch

from detectron2.structures import Boxes, pairwise_iou

__all__ = ["score_voting"]


@torch.no_grad()
def score_voting(
    det_boxes: torch.Tensor,
    det_classes: torch.Tensor,
    cand_boxes: torch.Tensor,
    cand_scores: torch.Tensor,
    cand_classes: torch.Tensor,
    sigma: float = 0.025,
    min_iou: float = 0.01,
) -> torch.Tensor:
    """Replace each kept detection's box by a weighted mean of the candidate boxes around it.

    For detection d and every candidate c of the same class with IoU(d, c) > ``min_iou``, the
    weight is ``exp(-(1 - IoU)^2 / sigma) * score_c`` (mmdet ``PAAHead.score_voting``; the
    candidates are all boxes that entered NMS). Scores and classes are not changed. A detection
    with no such candidate (impossible when the detections are among the candidates) keeps its box.

    Args:
        det_boxes: (D, 4) XYXY boxes kept by NMS; det_classes: (D,) their classes.
        cand_boxes: (C, 4) XYXY candidate boxes; cand_scores: (C,) their scores;
            cand_classes: (C,) their classes.
        sigma: width of the IoU weighting (0.025 in PAA).
        min_iou: candidates must overlap the detection by more than this.
    Returns:
        (D, 4) voted boxes, same dtype as ``det_boxes``.
    """
    if len(det_boxes) == 0 or len(cand_boxes) == 0:
        return det_boxes.clone()
    iou = pairwise_iou(Boxes(det_boxes.float()), Boxes(cand_boxes.float()))  # (D, C)
    related = (iou > min_iou) & (det_classes[:, None] == cand_classes[None, :])
    weights = torch.exp(-((1.0 - iou) ** 2) / sigma) * cand_scores.float()[None, :]
    weights = torch.where(related, weights, torch.zeros_like(weights))
    total = weights.sum(dim=1, keepdim=True)
    voted = weights @ cand_boxes.float() / total.clamp(min=torch.finfo(torch.float32).tiny)
    voted = torch.where(total > 0, voted, det_boxes.float())
    return voted.to(det_boxes.dtype)
