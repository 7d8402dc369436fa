"""The FPN of YOLACT as the RS authors' mmdet config builds it: P3-P7 with bilinear, size-matched
top-down upsampling (so a 550 px input gives 69, 35, 18, 9, 5), P6 from C5 and P7 from P6 with no
ReLU in between, and no padding of the input."""

import math
from typing import List

import torch.nn.functional as F

from detectron2.modeling.backbone.fpn import FPN

__all__ = ["YOLACTFPN", "pyramid_strides"]


class YOLACTFPN(FPN):
    """Detectron2's :class:`FPN` with the top-down path resized bilinearly to each lateral's exact
    size (odd sizes such as 69 / 35 do not double), and no size divisibility: YOLACT feeds fixed
    550 x 550 images, unpadded. Same constructor as :class:`FPN` (``fuse_type`` "sum")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._fuse_type != "sum":
            raise ValueError(f"YOLACTFPN adds the top-down path (sum), not {self._fuse_type!r}")

    @property
    def size_divisibility(self) -> int:
        return 0

    def forward(self, x):
        """
        Args:
            x: (N, C, H, W) input images.
        Returns:
            dict name -> (N, out_channels, Hi, Wi), the names of :meth:`output_shape`.
        """
        bottom_up = self.bottom_up(x)
        # lateral_convs / output_convs run from the coarsest input level to the finest
        names = self.in_features[::-1]
        prev = self.lateral_convs[0](bottom_up[names[0]])
        results = [self.output_convs[0](prev)]
        for name, lateral_conv, output_conv in zip(
            names[1:], self.lateral_convs[1:], self.output_convs[1:]
        ):
            lateral = lateral_conv(bottom_up[name])
            prev = lateral + F.interpolate(
                prev, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            results.insert(0, output_conv(prev))
        if self.top_block is not None:
            source = bottom_up.get(self.top_block.in_feature)
            if source is None:
                source = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(source))
        return dict(zip(self._out_features, results))


def pyramid_strides(image_size: int, levels=(3, 4, 5, 6, 7)) -> List[float]:
    """Anchor strides of a square ``image_size`` input: the input size over each level's size.

    A ResNet + :class:`YOLACTFPN` level ``l`` has size ``ceil(image_size / 2**l)`` (each stride-2
    conv rounds up), so a 550 input gives 550 / [69, 35, 18, 9, 5], the authors' strides.

    Args:
        image_size: side of the (square, unpadded) network input.
        levels: pyramid levels of the head.
    Returns:
        one float stride per level.
    """
    strides = []
    for level in levels:
        size = image_size
        for _ in range(level):
            size = math.ceil(size / 2)
        strides.append(image_size / size)
    return strides
