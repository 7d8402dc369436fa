"""The calling convention shared by the dense assigners, and its common checks."""

from typing import List, Optional, Tuple

import torch

from detectron2.structures import Boxes, Instances

__all__ = ["AnchorAssigner"]


class AnchorAssigner:
    """Base class of the dense assigners: labels the anchors of one image.

    Subclasses implement :meth:`assign`; :meth:`__call__` checks the inputs and handles an image
    without ground truth (every anchor gets ``empty_label``) so that :meth:`assign` always sees at
    least one GT box and one anchor.
    """

    #: whether the meta-architecture must pass the image's predictions (only PAA needs them)
    uses_predictions = False
    #: the label of every anchor of an image without ground truth (0: negative)
    empty_label = 0

    @torch.no_grad()
    def __call__(
        self,
        anchors: Boxes,
        num_anchors_per_level: List[int],
        gt_instances: Instances,
        pred_logits: Optional[torch.Tensor] = None,
        pred_boxes: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            anchors: (R, 4) anchors of all levels of one image, level after level.
            num_anchors_per_level: anchors per level, summing to R.
            gt_instances: the image's ground truth, with ``gt_boxes`` (G boxes) and
                ``gt_classes``.
            pred_logits: (R, K) the image's classification logits; pred_boxes: (R, 4) its decoded
                predicted boxes. Required when ``uses_predictions``, ignored otherwise.
        Returns:
            matched_idxs: (R,) int64, index of the matched GT (meaningful where the label is 1).
            labels: (R,) int8: 1 positive, 0 negative, -1 ignored.
        """
        num_anchors = len(anchors)
        if sum(num_anchors_per_level) != num_anchors:
            raise ValueError(f"{num_anchors_per_level} anchors per level, {num_anchors} in total")
        if self.uses_predictions and (pred_logits is None or pred_boxes is None):
            raise ValueError(f"{type(self).__name__} needs the image's pred_logits and pred_boxes")
        if len(gt_instances.gt_boxes) == 0 or num_anchors == 0:
            device = anchors.tensor.device
            matched_idxs = torch.zeros(num_anchors, dtype=torch.int64, device=device)
            labels = torch.full((num_anchors,), self.empty_label, dtype=torch.int8, device=device)
            return matched_idxs, labels
        return self.assign(anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes)

    def assign(self, anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes):
        """:meth:`__call__` (same arguments and outputs) for an image with at least one GT box and
        one anchor; ``pred_logits`` / ``pred_boxes`` are None unless ``uses_predictions``."""
        raise NotImplementedError
