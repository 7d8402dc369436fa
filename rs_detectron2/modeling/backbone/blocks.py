"""FPN top blocks as the authors' mmdetection necks build them."""

from typing import List

from torch import Tensor

from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["LastLevelP6P7NoReLU"]


class LastLevelP6P7NoReLU(LastLevelP6P7):
    """:class:`LastLevelP6P7` with P7 = conv(P6) instead of conv(relu(P6)): the extra levels of
    mmdetection's FPN with ``relu_before_extra_convs=False``, as in the RS-ATSS and RS-PAA
    configs of the RS paper's code. Same arguments and parameters as :class:`LastLevelP6P7`
    (``in_feature="p5"`` for mmdetection's ``add_extra_convs="on_output"``).
    """

    def forward(self, x: Tensor) -> List[Tensor]:
        """
        Args:
            x: (N, C, H, W) the ``in_feature`` map.
        Returns:
            [P6, P7], each downsampled 2x from the previous.
        """
        p6 = self.p6(x)
        return [p6, self.p7(p6)]
