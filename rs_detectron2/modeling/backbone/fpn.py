"""The yacs builders of the dense RS backbones (``MODEL.BACKBONE.NAME``), whose P6 and P7 come from
the FPN's P5 rather than from res5 as in Detectron2's ``build_retinanet_resnet_fpn_backbone``:
``build_rs_atss_resnet_fpn_backbone`` (RS-ATSS / RS-PAA: no ReLU before P7) and
``build_fcos_resnet_fpn_backbone`` (RS-FCOS, Detectron2's FCOS: a ReLU before P7)."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from .blocks import LastLevelP6P7NoReLU

__all__ = ["build_fcos_resnet_fpn_backbone", "build_rs_atss_resnet_fpn_backbone"]


def _resnet_fpn_from_p5(cfg, input_shape: ShapeSpec, top_block_class) -> FPN:
    """A ResNet-FPN (``MODEL.RESNETS``, ``MODEL.FPN``) whose top block builds P6 and P7 from P5."""
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block_class(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


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
    return _resnet_fpn_from_p5(cfg, input_shape, LastLevelP6P7NoReLU)


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """The backbone of Detectron2's FCOS LazyConfig model and of the authors' FCOS configs
    (mmdetection's ``add_extra_convs="on_output"``, ``relu_before_extra_convs=True``): P6 from
    the FPN's P5, P7 from ReLU(P6). RS-FCOS's yacs backbone.

    Args:
        cfg: a yacs config (``MODEL.RESNETS``, ``MODEL.FPN``).
        input_shape: the image's ShapeSpec.
    Returns:
        an FPN with outputs p3-p7 (with ``MODEL.FPN.IN_FEATURES`` res3-res5).
    """
    return _resnet_fpn_from_p5(cfg, input_shape, LastLevelP6P7)
