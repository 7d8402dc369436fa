"""ATSS: Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as used by RS-ATSS."""

import torch

from detectron2.structures import pairwise_iou

from .base import AnchorAssigner

__all__ = ["ATSSAssigner"]


class ATSSAssigner(AnchorAssigner):
    """Label anchors with the ATSS rule (the semantics of mmdet's ``ATSSAssigner``).

    For every GT box:

    1. on each level, the ``topk`` anchors whose centres are closest to the GT centre are
       candidates (fewer if the level has fewer anchors); distance ties go to the lower anchor
       index (a stable sort, so the result is deterministic);
    2. the IoU threshold of the GT is mean + std of its candidates' IoUs (``std`` with Bessel's
       correction, as ``torch.std``; with a single candidate it is NaN and nothing is positive);
    3. a candidate is positive for the GT if its IoU >= that threshold and its centre lies inside
       the GT box by more than ``center_eps`` pixels on every side.

    An anchor that is positive for several GTs is matched to the one with the highest IoU. All
    other anchors are negatives: ATSS ignores nothing.
    """

    def __init__(self, topk: int = 9, center_eps: float = 0.01):
        """
        Args:
            topk: candidates per level and GT (9 in ATSS and RS-ATSS).
            center_eps: how far inside the GT box an anchor centre must be (mmdet: 0.01 px).
        """
        self.topk = int(topk)
        self.center_eps = float(center_eps)

    def __repr__(self):
        return f"ATSSAssigner(topk={self.topk}, center_eps={self.center_eps})"

    def assign(self, anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes):
        """See :class:`AnchorAssigner`; labels are 1 or 0 (ATSS ignores nothing), ``matched_idxs``
        is 0 where the label is 0. The predictions are not used."""
        gt_boxes = gt_instances.gt_boxes
        iou = pairwise_iou(gt_boxes, anchors)  # (G, R)
        anchor_centers = anchors.get_centers()  # (R, 2)
        gt_centers = gt_boxes.get_centers()  # (G, 2)
        distances = (gt_centers[:, None, :] - anchor_centers[None, :, :]).pow(2).sum(-1).sqrt()

        candidates = []  # per level, (G, k) anchor indices
        start = 0
        for count in num_anchors_per_level:
            k = min(self.topk, count)
            if k > 0:
                order = torch.argsort(distances[:, start : start + count], dim=1, stable=True)
                candidates.append(order[:, :k] + start)
            start += count
        candidates = torch.cat(candidates, dim=1)  # (G, C)

        cand_iou = iou.gather(1, candidates)  # (G, C)
        threshold = cand_iou.mean(dim=1) + cand_iou.std(dim=1)  # (G,)

        centers = anchor_centers[candidates]  # (G, C, 2)
        box = gt_boxes.tensor[:, None, :]  # (G, 1, 4)
        inside = (
            torch.stack(
                [
                    centers[..., 0] - box[..., 0],
                    centers[..., 1] - box[..., 1],
                    box[..., 2] - centers[..., 0],
                    box[..., 3] - centers[..., 1],
                ],
                dim=-1,
            ).amin(dim=-1)
            > self.center_eps
        )

        is_pos = (cand_iou >= threshold[:, None]) & inside
        # IoU of each (GT, anchor) pair where the anchor is a positive candidate of the GT, else -1
        pos_iou = torch.full_like(iou, -1.0)
        pos_iou.scatter_(
            1, candidates, torch.where(is_pos, cand_iou, torch.full_like(cand_iou, -1))
        )
        best_iou, best_gt = pos_iou.max(dim=0)  # exact IoU ties: the first GT
        positive = best_iou >= 0
        matched_idxs = torch.where(positive, best_gt, torch.zeros_like(best_gt))
        return matched_idxs, positive.to(torch.int8)
