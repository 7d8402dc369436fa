"""Fast NMS (Bolya et al., "YOLACT: Real-time Instance Segmentation", ICCV 2019, Sec. 3.4)."""

from typing import Tuple

import torch

__all__ = ["batched_pairwise_iou", "fast_nms"]


def batched_pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of boxes within each group.

    Args:
        boxes: (B, T, 4) XYXY boxes, B groups of T.
    Returns:
        (B, T, T) IoUs; empty boxes give 0.
    """
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(dim=-1)
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    score_thresh: float = 0.05,
    iou_thresh: float = 0.5,
    top_k: int = 200,
    max_num: int = 100,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class Fast NMS over class-agnostic boxes, in one batched computation.

    For each class, its ``top_k`` highest-scored candidates are compared with each other: a box
    is dropped when its IoU with any higher-scored box of the same class exceeds ``iou_thresh``,
    whether or not that box was itself dropped (this is what makes it a matrix operation instead
    of a loop). The score threshold is applied *after* suppression, so boxes below it still
    suppress others, as in the authors' implementation. Finally all classes are sorted together
    and the ``max_num`` best are kept.

    Args:
        boxes: (M, 4) XYXY candidate boxes (one box per candidate, shared by all classes).
        scores: (M, K) per-class scores of the candidates (probabilities, no background column).
        score_thresh: detections must score strictly above this.
        iou_thresh: suppression when the IoU is strictly above this.
        top_k: candidates per class that enter NMS.
        max_num: detections kept over all classes.
    Returns:
        keep: (D,) int64 indices into the M candidates (a candidate may appear once per class);
        scores: (D,) their scores, descending; classes: (D,) int64 their classes.
    """
    num_classes = scores.shape[1]
    top_k = min(int(top_k), boxes.shape[0])
    if top_k == 0 or num_classes == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=boxes.device)
        return empty, scores.new_zeros(0), empty.clone()
    # (K, T): each class's candidates sorted by score
    cls_scores, idx = scores.t().topk(top_k, dim=1)
    cls_boxes = boxes[idx.reshape(-1)].reshape(num_classes, top_k, 4)
    iou = batched_pairwise_iou(cls_boxes)
    # entry (c, i, j) with i < j: box i of class c scores higher than box j
    max_iou_with_higher = iou.triu(diagonal=1).amax(dim=1)
    keep = (max_iou_with_higher <= iou_thresh) & (cls_scores > score_thresh)
    classes = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)
    kept_scores, order = cls_scores[keep].sort(descending=True)
    order = order[:max_num]
    return idx[keep][order], kept_scores[: len(order)], classes[keep][order]
