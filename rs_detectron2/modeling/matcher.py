"""Max-IoU matching with mmdetection's rule for low-quality matches (the authors' assigner)."""

from typing import List

import torch

from detectron2.modeling.matcher import Matcher

__all__ = ["MinIoULowQualityMatcher"]


class MinIoULowQualityMatcher(Matcher):
    """:class:`Matcher` whose low-quality matches follow mmdetection's ``MaxIoUAssigner``
    (``match_low_quality=True``, ``gt_max_assign_all=True``), the assigner of the RS paper's
    RPN (``min_pos_iou=0.3``) and of its Mask R-CNN's R-CNN head (``min_pos_iou=0.5``):

    - a ground truth gets its highest-IoU predictions (ties included) as low-quality positives
      only if that IoU is at least ``min_low_quality_iou`` (Detectron2: any IoU, even 0.01);
    - such a prediction is matched to *that* ground truth (Detectron2 keeps the prediction's own
      best ground truth); where it is the best of several ground truths, the last one wins,
      as in mmdetection's loop over ground truths.

    The thresholds and labels work as in :class:`Matcher`. With ``allow_low_quality_matches=
    False`` it is exactly :class:`Matcher`.
    """

    def __init__(
        self,
        thresholds: List[float],
        labels: List[int],
        allow_low_quality_matches: bool = True,
        min_low_quality_iou: float = 0.3,
    ):
        """
        Args:
            thresholds, labels, allow_low_quality_matches: as :class:`Matcher`.
            min_low_quality_iou: the lowest IoU of a ground truth's best prediction that still
                makes it a low-quality positive (mmdetection ``min_pos_iou``).
        """
        super().__init__(thresholds, labels, allow_low_quality_matches=allow_low_quality_matches)
        self.min_low_quality_iou = float(min_low_quality_iou)

    def __repr__(self):
        return (
            f"MinIoULowQualityMatcher(thresholds={self.thresholds[1:-1]}, labels={self.labels}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches}, "
            f"min_low_quality_iou={self.min_low_quality_iou})"
        )

    def __call__(self, match_quality_matrix: torch.Tensor):
        """
        Args:
            match_quality_matrix: (M, N) IoUs (>= 0) of M ground truths with N predictions.
        Returns:
            matches: (N,) int64 index of the matched ground truth; match_labels: (N,) int8,
            as :class:`Matcher`.
        """
        matches, match_labels = super().__call__(match_quality_matrix)
        if self.allow_low_quality_matches and match_quality_matrix.numel() > 0:
            best_per_gt = match_quality_matrix.max(dim=1).values  # (M,)
            is_best = (match_quality_matrix == best_per_gt[:, None]) & (
                best_per_gt >= self.min_low_quality_iou
            )[:, None]
            gt_idx, pred_idx = torch.nonzero(is_best, as_tuple=True)  # few pairs: ties only
            # 1 + the index of the last ground truth for which a prediction is a best match
            last_gt = torch.zeros_like(matches).scatter_reduce(
                0, pred_idx, gt_idx + 1, reduce="amax"
            )  # (N,), 0: none
            reassigned = last_gt > 0
            matches = torch.where(reassigned, last_gt - 1, matches)
            match_labels[reassigned] = 1
        return matches, match_labels

    def set_low_quality_matches_(self, match_labels, match_quality_matrix):
        """A no-op: :meth:`__call__` makes the low-quality matches, since with mmdetection's rule
        they also change ``matches``, which this hook of :class:`Matcher` does not receive."""
