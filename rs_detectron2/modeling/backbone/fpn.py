"""The yacs builder of the RS-ATSS / RS-PAA backbone (``MODEL.BACKBONE.NAME:
build_rs_atss_resnet_fpn_backbone``): P6 from P5 and P7 from P6 without a ReLU."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone

from .blocks import LastLevelP6P7NoReLU

__all__ = ["build_rs_atss_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_rs_atss_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Detectron2's ``build_retinanet_resnet_fpn_backbone`` with mmdetection's extra levels of
    RS-ATSS / RS-PAA (``add_extra_convs="on_output"``, ``relu_before_extra_convs=False``): P6
    from the FPN's P5, P7 from P6 without a ReLU.

    Args:
        cfg: a yacs config (``MODEL.RESNETS``, ``MODEL.FPN``).
        input_shape: the image's ShapeSpec.
    Returns:
        an FPN with outputs p3-p7 (with ``MODEL.FPN.IN_FEATURES`` res3-res5).
    """
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7NoReLU(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
