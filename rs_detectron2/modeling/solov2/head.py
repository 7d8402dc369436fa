"""SOLOv2's heads (Wang et al., "SOLOv2: Dynamic and Fast Instance Segmentation", NeurIPS 2020):
the instance head (category and kernel branches on S x S grids) and the mask-feature branch."""

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.layers import Conv2d, ShapeSpec, get_norm

__all__ = [
    "SOLOv2InstanceHead",
    "SOLOv2MaskFeatHead",
    "coord_channels",
    "solov2_level_features",
]


def coord_channels(feature: Tensor) -> Tensor:
    """CoordConv's two extra channels for ``feature`` (N, C, H, W): x then y, each spanning
    linspace(-1, 1) over the map's width / height. Returns (N, 2, H, W) in ``feature``'s dtype."""
    n, _, h, w = feature.shape
    kw = dict(device=feature.device, dtype=feature.dtype)
    y, x = torch.meshgrid(
        torch.linspace(-1, 1, h, **kw), torch.linspace(-1, 1, w, **kw), indexing="ij"
    )
    return torch.stack([x, y]).expand(n, -1, -1, -1)


def solov2_level_features(features: Sequence[Tensor]) -> List[Tensor]:
    """The instance head's five inputs from FPN's P2-P6: P2 bilinearly halved (to P3's size), P3,
    P4, P5, and P6 bilinearly resized to P5's size (so the level strides are 8, 8, 16, 32, 32).

    Args:
        features: five (N, C, Hl, Wl) maps P2..P6.
    Returns:
        the five maps the instance head reads.
    """
    assert len(features) == 5, f"SOLOv2 reads P2-P6, got {len(features)} levels"
    p2, p3, p4, p5, p6 = features
    return [
        F.interpolate(p2, size=p3.shape[-2:], mode="bilinear", align_corners=False),
        p3,
        p4,
        p5,
        F.interpolate(p6, size=p5.shape[-2:], mode="bilinear", align_corners=False),
    ]


def _conv_relu(in_channels: int, out_channels: int, norm: str) -> List[nn.Module]:
    """A 3x3 conv (no bias under a norm), its norm, then ReLU."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels),
    )
    return [conv, nn.ReLU(inplace=True)]


def _tower(in_channels: int, conv_dims: int, num_convs: int, norm: str) -> nn.Sequential:
    layers = []
    for k in range(num_convs):
        layers += _conv_relu(in_channels if k == 0 else conv_dims, conv_dims, norm)
    return nn.Sequential(*layers)


class SOLOv2InstanceHead(nn.Module):
    """Category and kernel branches of SOLOv2 (the SOLOv2 paper's mask kernel branch).

    Each level's features are resized (bilinear) to that level's S x S grid. The kernel branch
    reads them with two CoordConv channels and predicts, for every cell, the ``num_kernels``
    weights of a 1x1 dynamic convolution of the mask features; the category branch reads them
    without coordinates and predicts ``num_classes`` sigmoid logits per cell.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_grids: Sequence[int] = (40, 36, 24, 16, 12),
        num_convs: int = 4,
        conv_dims: int = 512,
        num_kernels: int = 256,
        norm: str = "GN",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: one ShapeSpec per level (5 for P2-P6), all with the same channels.
            num_classes: K, the number of foreground classes.
            num_grids: S of each level.
            num_convs, conv_dims: depth and width of both towers (R-101: 4 x 512; light: 2 x 256).
            num_kernels: E, the dynamic kernel size = the mask features' channels.
            norm: normalisation of the tower convs (GN(32) in SOLOv2).
            prior_prob: initial foreground probability of the category logits (bias init).
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        assert len(channels) == 1, f"every level needs the same channels, got {channels}"
        assert len(num_grids) == len(input_shape), (num_grids, len(input_shape))
        in_channels = channels.pop()
        self.num_classes = int(num_classes)
        self.num_grids = [int(s) for s in num_grids]
        self.num_kernels = int(num_kernels)
        self.kernel_tower = _tower(in_channels + 2, conv_dims, num_convs, norm)
        self.cate_tower = _tower(in_channels, conv_dims, num_convs, norm)
        self.kernel_pred = nn.Conv2d(conv_dims, num_kernels, kernel_size=3, padding=1)
        self.cate_pred = nn.Conv2d(conv_dims, num_classes, kernel_size=3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            features: per-level (N, C, Hl, Wl) maps, see :func:`solov2_level_features`.
        Returns:
            cate_logits: per-level (N, K, S, S) category logits.
            kernels: per-level (N, E, S, S) dynamic kernels.
        """
        cate_logits, kernels = [], []
        for feature, grid in zip(features, self.num_grids):
            x = torch.cat([feature, coord_channels(feature)], dim=1)
            x = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
            kernels.append(self.kernel_pred(self.kernel_tower(x)))
            cate_logits.append(self.cate_pred(self.cate_tower(x[:, :-2])))
        return cate_logits, kernels


class SOLOv2MaskFeatHead(nn.Module):
    """SOLOv2's unified mask-feature branch (the SOLOv2 paper's): P2-P5 each brought to stride 4
    by repeated (3x3 conv + norm + ReLU + bilinear x2), P5 with two CoordConv channels, summed and
    projected by a 1x1 conv (+ norm + ReLU) to the ``num_kernels`` channels of the dynamic convs.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        conv_dims: int = 128,
        num_kernels: int = 256,
        norm: str = "GN",
    ):
        """
        Args:
            input_shape: ShapeSpecs of P2-P5 (strides 4, 8, 16, 32).
            conv_dims: channels of the per-level convs.
            num_kernels: E, the output channels (the instance head's kernel size).
            norm: normalisation after each conv.
        """
        super().__init__()
        self.num_kernels = int(num_kernels)
        self.levels = nn.ModuleList()
        last = len(input_shape) - 1
        for level, shape in enumerate(input_shape):
            in_channels = shape.channels + (2 if level == last and level > 0 else 0)
            stages = []
            for k in range(max(level, 1)):
                stages += _conv_relu(in_channels if k == 0 else conv_dims, conv_dims, norm)
                if level > 0:
                    stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.levels.append(nn.Sequential(*stages))
        self.out = nn.Sequential(
            Conv2d(
                conv_dims,
                num_kernels,
                kernel_size=1,
                bias=not norm,
                norm=get_norm(norm, num_kernels),
            ),
            nn.ReLU(inplace=True),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)

    def forward(self, features: List[Tensor]) -> Tensor:
        """
        Args:
            features: P2-P5, (N, C, H/4, W/4) ... (N, C, H/32, W/32) for a padded (H, W) batch
                (sizes divisible by 32).
        Returns:
            (N, E, H/4, W/4) mask features.
        """
        last = len(features) - 1
        total = None
        for level, (feature, layers) in enumerate(zip(features, self.levels)):
            if level == last and level > 0:
                feature = torch.cat([feature, coord_channels(feature)], dim=1)
            x = layers(feature)
            total = x if total is None else total + x
        return self.out(total)
