"""SOLOv2's training targets: which grid cells of which level are positive for which ground truth,
and the ground-truth masks at the mask features' resolution (SOLO, Wang et al. ECCV 2020;
SOLOv2, NeurIPS 2020)."""

from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detectron2.structures import Instances

from ..masks import rasterize_gt_masks

__all__ = ["SOLOv2Targets", "center_regions", "solov2_targets"]

# The mask features are at stride 4 of the padded image.
MASK_STRIDE = 4


class SOLOv2Targets(NamedTuple):
    """Targets of a batch of N images over C = sum(S_l^2) grid cells (levels concatenated, each in
    raster order).

    Attributes:
        labels: (N, C) int64 class of each cell, ``num_classes`` for background.
        pos_img, pos_cell, pos_gt: (M,) int64 positive pairs (image, flat cell, ground truth),
            sorted by image then cell (raster order) then ground-truth order. ``pos_gt`` indexes
            ``gt_masks``.
        gt_masks: (G, H/4, W/4) bool masks of the batch's G ground truths (images concatenated)
            at the mask features' resolution, for a padded batch of size (H, W).
    """

    labels: Tensor
    pos_img: Tensor
    pos_cell: Tensor
    pos_gt: Tensor
    gt_masks: Tensor


def center_regions(
    centers: Tensor, boxes: Tensor, canvas_size: Tuple[int, int], grid: int, sigma: float = 0.2
) -> Tensor:
    """Positive cells of each object on an S x S grid over the padded canvas (SOLO's centre
    sampling).

    The object's centre cell is the cell of its centre of mass; its centre region is its box
    scaled by ``sigma`` around the centre of mass, clipped to the 3 x 3 cells around the centre
    cell.

    Args:
        centers: (G, 2) centres of mass (x, y) in pixels.
        boxes: (G, 4) XYXY boxes.
        canvas_size: (H, W) of the padded batch.
        grid: S.
        sigma: scale of the centre region (0.2).
    Returns:
        (G, S, S) bool, True on the object's positive cells (rows = y).
    """
    height, width = canvas_size
    half_w = 0.5 * (boxes[:, 2] - boxes[:, 0]) * sigma
    half_h = 0.5 * (boxes[:, 3] - boxes[:, 1]) * sigma
    cx, cy = centers[:, 0], centers[:, 1]

    def cell(v, size):
        return torch.floor(v * grid / size).long()

    row, col = cell(cy, height).clamp(0, grid - 1), cell(cx, width).clamp(0, grid - 1)
    top = torch.maximum(cell(cy - half_h, height).clamp(min=0), row - 1)
    down = torch.minimum(cell(cy + half_h, height).clamp(max=grid - 1), row + 1)
    left = torch.maximum(cell(cx - half_w, width).clamp(min=0), col - 1)
    right = torch.minimum(cell(cx + half_w, width).clamp(max=grid - 1), col + 1)
    r = torch.arange(grid, device=centers.device)
    rows = (r >= top[:, None]) & (r <= down[:, None])
    cols = (r >= left[:, None]) & (r <= right[:, None])
    return rows[:, :, None] & cols[:, None, :]


@torch.no_grad()
def solov2_targets(
    gt_instances: List[Instances],
    canvas_size: Tuple[int, int],
    num_classes: int,
    num_grids: Sequence[int],
    scale_ranges: Sequence[Tuple[float, float]],
    sigma: float = 0.2,
    first_come: bool = True,
) -> SOLOv2Targets:
    """Grid targets of a batch.

    An object falls on every level whose scale range contains sqrt(w * h) of its box (the ranges
    overlap, so it may fall on two). Its centre is the centre of mass of its mask (the mean of the
    mask's pixel indices); its positive cells are :func:`center_regions`. Objects with an empty
    mask are skipped. Its mask target is its mask bilinearly rescaled by 1/4 and binarised at 0.5,
    placed top-left on the padded (H/4, W/4) canvas.

    Two objects may claim the same cell. With ``first_come`` (RS-SOLOv2) the first object in
    annotation order keeps the cell and is its only mask target: one mask, one quality per
    positive cell. Without it (stock SOLOv2) the cell takes the class of the last object that
    claims it and has a mask target for every object that claims it.

    Args:
        gt_instances: per image, ``gt_boxes``, ``gt_classes`` and ``gt_masks`` (bitmasks or
            polygons) at the (unpadded) image size.
        canvas_size: (H, W) of the padded batch, divisible by 4.
        num_classes: K (the background label).
        num_grids: S of each level.
        scale_ranges: (lower, upper) sqrt-area range of each level, inclusive.
        sigma: scale of the centre regions.
        first_come: the cell assignment, see above.
    Returns:
        :class:`SOLOv2Targets`, positive pairs in raster order of the cells (so that the category
        entries and the masks of the positives are in the same order).
    """
    assert len(num_grids) == len(scale_ranges), (num_grids, scale_ranges)
    height, width = canvas_size
    feat_size = (height // MASK_STRIDE, width // MASK_STRIDE)
    offsets = [0]
    for s in num_grids:
        offsets.append(offsets[-1] + s * s)
    device = gt_instances[0].gt_classes.device if gt_instances else torch.device("cpu")

    labels, pos_img, pos_cell, pos_gt, gt_masks = [], [], [], [], []
    num_gt = 0
    for img, inst in enumerate(gt_instances):
        image_labels = torch.full((offsets[-1],), num_classes, dtype=torch.long, device=device)
        if len(inst) == 0:
            labels.append(image_labels)
            continue
        if not inst.has("gt_masks"):
            raise ValueError("SOLOv2 trains on instance masks: the ground truth has no gt_masks")
        masks = rasterize_gt_masks(inst, inst.image_size)
        h, w = masks.shape[-2:]
        fmasks = masks.float()
        area = fmasks.sum(dim=(1, 2))
        ys = torch.arange(h, device=device, dtype=torch.float32)
        xs = torch.arange(w, device=device, dtype=torch.float32)
        area_safe = area.clamp(min=1)
        centers = torch.stack(
            [(fmasks.sum(1) * xs).sum(1) / area_safe, (fmasks.sum(2) * ys).sum(1) / area_safe],
            dim=1,
        )
        boxes = inst.gt_boxes.tensor.float()
        scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
        classes = inst.gt_classes

        for level, (grid, (lower, upper)) in enumerate(zip(num_grids, scale_ranges)):
            on_level = (area > 0) & (scale >= lower) & (scale <= upper)
            idx = torch.nonzero(on_level).squeeze(1)
            if idx.numel() == 0:
                continue
            region = center_regions(centers[idx], boxes[idx], canvas_size, grid, sigma)
            region = region.flatten(1)  # (g, S*S)
            claimed = region.any(dim=0)
            hits = region.int()
            if first_come:
                owner = hits.argmax(dim=0)  # the first maximum: the first object in order
                cells = torch.nonzero(claimed).squeeze(1)
                pairs_cell, pairs_gt = cells, idx[owner[cells]]
            else:
                owner = region.shape[0] - 1 - hits.flip(0).argmax(dim=0)  # the last one
                pairs_cell, pairs_gt = torch.nonzero(region.t(), as_tuple=True)
                pairs_gt = idx[pairs_gt]
            cells_all = torch.nonzero(claimed).squeeze(1)
            image_labels[offsets[level] + cells_all] = classes[idx[owner[cells_all]]]
            pos_img.append(torch.full_like(pairs_cell, img))
            pos_cell.append(offsets[level] + pairs_cell)
            pos_gt.append(num_gt + pairs_gt)
        labels.append(image_labels)

        small = (int(h / MASK_STRIDE + 0.5), int(w / MASK_STRIDE + 0.5))
        down = F.interpolate(fmasks[:, None], size=small, mode="bilinear", align_corners=False)
        canvas = torch.zeros((len(masks),) + feat_size, dtype=torch.bool, device=device)
        canvas[:, : small[0], : small[1]] = down[:, 0] >= 0.5
        gt_masks.append(canvas)
        num_gt += len(masks)

    empty = torch.zeros(0, dtype=torch.long, device=device)
    pos_img = torch.cat(pos_img) if pos_img else empty
    pos_cell = torch.cat(pos_cell) if pos_cell else empty
    pos_gt = torch.cat(pos_gt) if pos_gt else empty
    # raster order per image: levels come in order, so sorting by (image, cell) is enough; the
    # stable sort keeps the ground-truth order of a cell's pairs
    order = torch.sort(pos_img * offsets[-1] + pos_cell, stable=True).indices
    gt_masks = (
        torch.cat(gt_masks)
        if gt_masks
        else torch.zeros((0,) + feat_size, dtype=torch.bool, device=device)
    )
    return SOLOv2Targets(
        labels=torch.stack(labels),
        pos_img=pos_img[order],
        pos_cell=pos_cell[order],
        pos_gt=pos_gt[order],
        gt_masks=gt_masks,
    )
