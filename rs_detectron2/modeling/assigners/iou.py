"""Max-IoU anchor assignment (RetinaNet's rule), as a pluggable assigner."""

from typing import List, Sequence, Tuple

import torch

from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances, pairwise_iou

__all__ = ["IoUAssigner"]


class IoUAssigner:
    """Label anchors by their best IoU with a ground-truth box, with Detectron2's :class:`Matcher`.

    With the defaults (RetinaNet, and RS-RetinaNet): IoU < 0.4 negative, [0.4, 0.5) ignored,
    >= 0.5 positive, and every GT also gets its highest-IoU anchor(s) as positives (low-quality
    matches; as in Detectron2, such an anchor keeps its own best GT as the match).

    Every assigner in this package is called per image as
    ``assigner(anchors, num_anchors_per_level, gt_instances, pred_logits=None, pred_boxes=None)``
    and returns ``(matched_idxs, labels)``; see :meth:`__call__`.
    """

    #: whether the meta-architecture must pass the image's predictions (only PAA needs them)
    uses_predictions = False

    def __init__(
        self,
        thresholds: Sequence[float] = (0.4, 0.5),
        labels: Sequence[int] = (0, -1, 1),
        allow_low_quality_matches: bool = True,
    ):
        """
        Args:
            thresholds, labels, allow_low_quality_matches: as :class:`Matcher`.
        """
        self.matcher = Matcher(
            list(thresholds), list(labels), allow_low_quality_matches=allow_low_quality_matches
        )

    def __repr__(self):
        m = self.matcher
        return (
            f"IoUAssigner(thresholds={m.thresholds[1:-1]}, labels={m.labels}, "
            f"allow_low_quality_matches={m.allow_low_quality_matches})"
        )

    @torch.no_grad()
    def __call__(
        self,
        anchors: Boxes,
        num_anchors_per_level: List[int],
        gt_instances: Instances,
        pred_logits=None,
        pred_boxes=None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            anchors: (R, 4) anchors of all levels of one image, level after level.
            num_anchors_per_level: anchors per level (unused here).
            gt_instances: the image's ground truth, with ``gt_boxes``.
            pred_logits, pred_boxes: unused.
        Returns:
            matched_idxs: (R,) int64, index of the matched GT (meaningful where label is 1).
            labels: (R,) int8: 1 positive, 0 negative, -1 ignored.
        """
        iou = pairwise_iou(gt_instances.gt_boxes, anchors)
        return self.matcher(iou)
