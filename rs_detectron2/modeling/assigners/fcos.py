"""FCOS's point assignment (Tian et al., ICCV 2019 and TPAMI 2020), as a pluggable assigner."""

import math
from typing import Sequence

import torch

from detectron2.structures import pairwise_point_box_distance

from .base import AnchorAssigner

__all__ = ["FCOSAssigner"]


class FCOSAssigner(AnchorAssigner):
    """Label the points of a dense detector with the rule of Detectron2's ``FCOS.label_anchors``.

    FCOS has one point per feature-map location. The dense RS detector works with anchor boxes,
    so each point is given as the square anchor of side = its level's stride centred on it, as
    Detectron2's FCOS builds them (``DefaultAnchorGenerator(sizes=[[s] for s in strides],
    aspect_ratios=[1.0], strides=strides)``): the point is the anchor's centre, its stride the
    anchor's width. Other anchor sizes would be read as other strides.

    A point p of stride s is a candidate of a ground-truth box B when all of these hold:

    1. p lies strictly inside B: its distances l, t, r, b to B's four sides are all > 0;
    2. centre sampling: p is nearer to B's centre than ``center_sampling_radius * s`` in the
       L-infinity norm (strictly);
    3. the level's size range: ``lo * s < max(l, t, r, b) < hi * s`` with
       ``(lo, hi) = size_range``, except that the first level has no lower bound and the last
       level no upper bound (the ranges (0, 64), (64, 128), ..., (512, inf) of strides 8-128).

    A point that is a candidate of several boxes is matched to the one of smallest area (the
    lowest index among equal areas); every other point is a negative. FCOS ignores nothing, and an
    image without ground truth has only negatives.

    One difference from Detectron2, in ties only: Detectron2 ranks the boxes by ``1e8 - area``
    in float32, which cannot tell apart areas within a few square pixels of each other (its
    spacing near 1e8 is 8), and then takes the lower index; the areas are compared exactly here.
    """

    def __init__(
        self,
        center_sampling_radius: float = 1.5,
        size_range: Sequence[float] = (4.0, 8.0),
    ):
        """
        Args:
            center_sampling_radius: the half-side, in strides, of the square around a box's centre
                in which its points may lie (Detectron2's FCOS: 1.5). ``float("inf")`` turns centre
                sampling off, leaving rules 1 and 3 (mmdetection's FCOS default).
            size_range: ``(lo, hi)``, in units of the point's stride: the bounds of the largest
                distance from a point to the sides of its box (Detectron2's FCOS: (4, 8)).
        Raises:
            ValueError: a radius that is not > 0, or bounds that are not ``0 <= lo < hi``.
        """
        radius = float(center_sampling_radius)
        if not radius > 0:  # also rejects NaN
            raise ValueError(f"center_sampling_radius must be > 0 (inf: off), got {radius}")
        bounds = tuple(float(v) for v in size_range)
        if len(bounds) != 2 or not 0 <= bounds[0] < bounds[1]:  # also rejects NaN
            raise ValueError(
                "size_range must be (lo, hi) with 0 <= lo < hi, in strides (Detectron2's FCOS: "
                f"(4, 8)), got {tuple(size_range)}"
            )
        self.center_sampling_radius = radius
        self.size_range = bounds

    def __repr__(self):
        return (
            f"FCOSAssigner(center_sampling_radius={self.center_sampling_radius}, "
            f"size_range={self.size_range})"
        )

    def assign(self, anchors, num_anchors_per_level, gt_instances, pred_logits, pred_boxes):
        """See :class:`AnchorAssigner`; labels are 1 or 0, ``matched_idxs`` is 0 where the label
        is 0. The predictions are not used. Memory: (R, G, 4) for R points and G boxes.

        Args:
            anchors: (R, 4) the points' stride-sized square anchors, level after level.
            num_anchors_per_level: points per level (the first and last levels' bounds differ).
            gt_instances: the image's G >= 1 boxes (``gt_boxes``).
        Returns:
            matched_idxs: (R,) int64; labels: (R,) int8 in {0, 1}.
        """
        gt_boxes = gt_instances.gt_boxes
        boxes = anchors.tensor
        points = anchors.get_centers()  # (R, 2)
        strides = boxes[:, 2] - boxes[:, 0]  # (R,)

        lo, hi = self.size_range
        lower = strides * lo
        upper = strides * hi
        lower[: num_anchors_per_level[0]] = 0.0  # the first level takes every small box
        upper[len(boxes) - num_anchors_per_level[-1] :] = math.inf  # the last every large one

        sides = pairwise_point_box_distance(points, gt_boxes)  # (R, G, 4): l, t, r, b
        reach = sides.amax(dim=2)  # (R, G)
        candidate = sides.amin(dim=2) > 0  # rule 1
        centre_offset = (points[:, None, :] - gt_boxes.get_centers()[None, :, :]).abs()
        candidate &= centre_offset.amax(dim=2) < self.center_sampling_radius * strides[:, None]
        candidate &= (reach > lower[:, None]) & (reach < upper[:, None])  # rule 3

        areas = torch.where(candidate, gt_boxes.area()[None, :], math.inf)  # (R, G)
        smallest, matched_idxs = areas.min(dim=1)  # the first index among equal areas
        positive = torch.isfinite(smallest)
        matched_idxs = torch.where(positive, matched_idxs, torch.zeros_like(matched_idxs))
        return matched_idxs, positive.to(torch.int8)
