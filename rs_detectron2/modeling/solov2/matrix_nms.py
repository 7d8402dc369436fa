"""Matrix NMS and points NMS of SOLOv2 (Wang et al., NeurIPS 2020): parallel,
loop-free suppression of masks by score decay, and local-maximum filtering of category maps."""

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["matrix_nms", "points_nms"]


def points_nms(heat: Tensor) -> Tensor:
    """Keep a grid cell's score only where it is a local maximum of its 2 x 2 neighbourhood
    (itself, up, left, up-left); zero it elsewhere.

    Args:
        heat: (N, K, S, S) scores (sigmoid of the category logits).
    Returns:
        (N, K, S, S), ``heat`` where it equals that neighbourhood's maximum, else 0.
    """
    hmax = F.max_pool2d(heat, kernel_size=2, stride=1, padding=1)[..., :-1, :-1]
    return heat * (hmax == heat).to(heat.dtype)


def matrix_nms(
    masks: Tensor,
    labels: Tensor,
    scores: Tensor,
    kernel: str = "gaussian",
    sigma: float = 2.0,
) -> Tensor:
    """Decayed scores of Matrix NMS (the SOLOv2 paper's), class-aware.

    For masks sorted by score, with IoU_ij the mask IoU of i (scored above j) and j of the same
    class (0 otherwise) and comp_i = max_k IoU_ki over the k scored above i:
    ``decay_j = min_i f(IoU_ij) / f(comp_i)``, with ``f(x) = exp(-sigma * x^2)`` (gaussian; sigma
    multiplies, as in the authors' code) or ``f(x) = 1 - x`` (linear). The result is
    ``score_j * decay_j``. The linear kernel's ``1 - comp_i`` is kept above 1e-6: a mask that
    duplicates a higher-scored one is suppressed to 0 and suppresses nothing. All pairs are
    computed at once (an N x N matrix, no loop over masks).

    Args:
        masks: (N, H, W) binary masks (bool or 0/1).
        labels: (N,) classes.
        scores: (N,) scores; any order (ties are broken by position).
        kernel: ``"gaussian"`` or ``"linear"``.
        sigma: the gaussian's factor.
    Returns:
        (N,) decayed scores, in the input order.
    """
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"unknown Matrix NMS kernel {kernel!r}")
    n = len(scores)
    if n == 0:
        return scores.clone()
    order = torch.sort(scores, descending=True, stable=True).indices
    flat = masks[order].reshape(n, -1).float()
    inter = flat @ flat.t()
    areas = flat.sum(dim=1)
    union = areas[:, None] + areas[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1e-6), torch.zeros_like(inter))
    sorted_labels = labels[order]
    same = sorted_labels[:, None] == sorted_labels[None, :]
    # row i, column j: i is scored above j
    iou = torch.triu(iou * same, diagonal=1)
    comp = iou.max(dim=0).values  # comp_i: the largest overlap with a higher-scored mask
    if kernel == "gaussian":
        ratio = torch.exp(-sigma * (iou**2 - comp[:, None] ** 2))
    else:
        ratio = (1 - iou) / (1 - comp[:, None]).clamp(min=1e-6)
    decay = ratio.min(dim=0).values
    out = torch.empty_like(scores)
    out[order] = scores[order] * decay.to(scores.dtype)
    return out
