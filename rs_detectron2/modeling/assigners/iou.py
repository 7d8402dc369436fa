"""Max-IoU anchor assignment (RetinaNet's rule), as a pluggable assigner."""

from typing import Sequence

from detectron2.modeling.matcher import Matcher
from detectron2.structures import pairwise_iou

from .base import AnchorAssigner

__all__ = ["IoUAssigner"]


class IoUAssigner(AnchorAssigner):
    """Label anchors by their best IoU with a ground-truth box, with Detectron2's :class:`Matcher`.

    With the defaults (RetinaNet, and RS-RetinaNet): IoU < 0.4 negative, [0.4, 0.5) ignored,
    >= 0.5 positive, and every GT also gets its highest-IoU anchor(s) as positives (low-quality
    matches; as in Detectron2, such an anchor keeps its own best GT as the match).

    Called as every :class:`AnchorAssigner`. An image without ground truth gets ``labels[0]``
    everywhere (as :class:`Matcher`).
    """

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
        self.empty_label = int(self.matcher.labels[0])

    def __repr__(self):
        m = self.matcher
        return (
            f"IoUAssigner(thresholds={m.thresholds[1:-1]}, labels={m.labels}, "
            f"allow_low_quality_matches={m.allow_low_quality_matches})"
        )

    def assign(self, anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes):
        """See :class:`AnchorAssigner`; only the IoUs with ``gt_instances.gt_boxes`` are used."""
        return self.matcher(pairwise_iou(gt_instances.gt_boxes, anchors))
