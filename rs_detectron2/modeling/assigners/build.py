"""The dense assigner of a yacs config: a registry of builders, one per ``MODEL.RS.DENSE.ASSIGNER``.

A new assigner (an :class:`~rs_detectron2.modeling.assigners.AnchorAssigner`) joins the yacs
configs by registering a builder under the name the config will use::

    @ASSIGNER_REGISTRY.register()
    def SimOTA(cfg):
        return SimOTAAssigner(center_radius=cfg.MODEL.RS.DENSE.SIMOTA_RADIUS)

LazyConfigs give the assigner itself (``assigner=L(ATSSAssigner)(topk=9)``).
"""

from detectron2.utils.registry import Registry

from ..registry import registered
from .atss import ATSSAssigner
from .base import AnchorAssigner
from .fcos import FCOSAssigner
from .iou import IoUAssigner
from .paa import PAAAssigner

__all__ = ["ASSIGNER_REGISTRY", "build_assigner"]

ASSIGNER_REGISTRY = Registry("ASSIGNER")
ASSIGNER_REGISTRY.__doc__ = """
Builders of the dense assigners, by the value of ``cfg.MODEL.RS.DENSE.ASSIGNER``. A builder is
called as ``builder(cfg)`` and returns an :class:`AnchorAssigner`.
"""


@ASSIGNER_REGISTRY.register()
def IoU(cfg) -> IoUAssigner:
    """RetinaNet's max-IoU rule with its thresholds and labels (``MODEL.RETINANET.IOU_*``)."""
    return IoUAssigner(cfg.MODEL.RETINANET.IOU_THRESHOLDS, cfg.MODEL.RETINANET.IOU_LABELS)


@ASSIGNER_REGISTRY.register()
def ATSS(cfg) -> ATSSAssigner:
    """ATSS with ``MODEL.RS.DENSE.ATSS_TOPK`` candidates per level."""
    return ATSSAssigner(topk=cfg.MODEL.RS.DENSE.ATSS_TOPK)


@ASSIGNER_REGISTRY.register()
def PAA(cfg) -> PAAAssigner:
    """PAA with ``MODEL.RS.DENSE.PAA_*``; its focal terms are RetinaNet's focal-loss options."""
    dense, retina = cfg.MODEL.RS.DENSE, cfg.MODEL.RETINANET
    return PAAAssigner(
        iou_threshold=dense.PAA_IOU_THRESHOLD,
        topk=dense.PAA_TOPK,
        focal_alpha=retina.FOCAL_LOSS_ALPHA,
        focal_gamma=retina.FOCAL_LOSS_GAMMA,
    )


@ASSIGNER_REGISTRY.register()
def FCOS(cfg) -> FCOSAssigner:
    """FCOS's points with ``MODEL.RS.DENSE.FCOS_CENTER_SAMPLING_RADIUS`` and
    ``MODEL.RS.DENSE.FCOS_SIZE_RANGE`` (in strides)."""
    dense = cfg.MODEL.RS.DENSE
    return FCOSAssigner(
        center_sampling_radius=dense.FCOS_CENTER_SAMPLING_RADIUS, size_range=dense.FCOS_SIZE_RANGE
    )


def build_assigner(cfg) -> AnchorAssigner:
    """The assigner named by ``cfg.MODEL.RS.DENSE.ASSIGNER``.

    Args:
        cfg: a yacs config with :func:`rs_detectron2.config.add_rs_config`'s keys.
    Raises:
        ValueError: the name is not in :data:`ASSIGNER_REGISTRY`.
    """
    key = "MODEL.RS.DENSE.ASSIGNER"
    return registered(ASSIGNER_REGISTRY, cfg.MODEL.RS.DENSE.ASSIGNER, key)(cfg)
