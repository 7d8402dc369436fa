"""YOLACT's prediction head and prototype network (Bolya et al., "YOLACT: Real-time Instance
Segmentation", ICCV 2019, Sec. 3.1-3.2 and Fig. 2-4), laid out as the RS authors' mmdet config
builds them."""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ProtoNet", "YOLACTHead"]


def _xavier(module: nn.Conv2d) -> nn.Conv2d:
    nn.init.xavier_uniform_(module.weight)
    nn.init.zeros_(module.bias)
    return module


class YOLACTHead(nn.Module):
    """The prediction head shared over the pyramid levels: one 3x3 conv + ReLU, then three sibling
    3x3 convs for the class logits, the box deltas and the mask coefficients (tanh).

    Every conv is Xavier-uniform with zero bias; the class bias is 0 (no focal-loss prior), as in
    the authors' code.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_anchors: int = 3,
        num_protos: int = 32,
        conv_dim: int = 256,
        background: bool = False,
    ):
        """
        Args:
            in_channels: channels of every input level.
            num_classes: K object classes.
            num_anchors: A anchors per location (3: one size, three aspect ratios).
            num_protos: P mask coefficients per anchor (one per prototype).
            conv_dim: channels of the shared conv.
            background: add a background logit per anchor (K + 1 outputs; YOLACT's softmax).
                Sigmoid classifiers (RS-YOLACT) have K.
        """
        super().__init__()
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)
        self.num_protos = int(num_protos)
        self.background = bool(background)
        self.num_logits = self.num_classes + int(self.background)
        self.shared = _xavier(nn.Conv2d(in_channels, conv_dim, 3, padding=1))
        self.cls_score = _xavier(nn.Conv2d(conv_dim, num_anchors * self.num_logits, 3, padding=1))
        self.bbox_pred = _xavier(nn.Conv2d(conv_dim, num_anchors * 4, 3, padding=1))
        self.coeff_pred = _xavier(nn.Conv2d(conv_dim, num_anchors * num_protos, 3, padding=1))

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """
        Args:
            features: per-level (N, C, Hi, Wi) maps.
        Returns:
            logits: per-level (N, A*(K or K+1), Hi, Wi); deltas: per-level (N, A*4, Hi, Wi);
            coeffs: per-level (N, A*P, Hi, Wi) in (-1, 1).
        """
        logits, deltas, coeffs = [], [], []
        for feature in features:
            x = F.relu(self.shared(feature))
            logits.append(self.cls_score(x))
            deltas.append(self.bbox_pred(x))
            coeffs.append(torch.tanh(self.coeff_pred(x)))
        return logits, deltas, coeffs


class ProtoNet(nn.Module):
    """The protonet on P3: 3 x (3x3 conv + ReLU), bilinear x2 upsampling + ReLU, 3x3 conv + ReLU,
    1x1 conv to the prototypes + ReLU (prototypes are >= 0). At a 550 px input it maps the 69 x 69
    P3 to 138 x 138 x 32."""

    def __init__(
        self, *, in_channels: int, conv_dim: int = 256, num_protos: int = 32, num_convs: int = 3
    ):
        """
        Args:
            in_channels: channels of P3.
            conv_dim: channels of the hidden convs.
            num_protos: P prototypes.
            num_convs: 3x3 convs before the upsampling.
        """
        super().__init__()
        self.in_channels = int(in_channels)
        self.num_protos = int(num_protos)
        channels = [in_channels] + [conv_dim] * num_convs
        self.convs = nn.ModuleList(
            _xavier(nn.Conv2d(c_in, c_out, 3, padding=1))
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.conv_up = _xavier(nn.Conv2d(conv_dim, conv_dim, 3, padding=1))
        self.proto = _xavier(nn.Conv2d(conv_dim, num_protos, 1))

    def forward(self, p3: Tensor) -> Tensor:
        """(N, C, H, W) P3 -> (N, P, 2H, 2W) prototypes."""
        x = p3
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        x = F.relu(self.conv_up(x))
        return F.relu(self.proto(x))
