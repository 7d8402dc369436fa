"""yacs support: :func:`add_rs_config` adds the RS keys. Importing this package imports
:mod:`rs_detectron2.modeling`, which registers the RS heads, the RS-ATSS / RS-PAA and RS-FCOS
backbone builders and the RS choices (ranking losses, dense assigners and heads) in their
registries, so that ``build_model`` finds them.

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from rs_detectron2.config import add_rs_config

    cfg = add_rs_config(get_cfg())
    cfg.merge_from_file("configs/yacs/rs_faster_rcnn_R_50_FPN_1x.yaml")
    model = build_model(cfg)
"""

from ..modeling import build_ranking_loss
from ..modeling.backbone import build_fcos_resnet_fpn_backbone, build_rs_atss_resnet_fpn_backbone
from .defaults import NO_SAMPLING, add_rs_config

# the name of build_ranking_loss when it lived here
ranking_loss_from_config = build_ranking_loss

__all__ = [
    "NO_SAMPLING",
    "add_rs_config",
    "build_ranking_loss",
    "build_fcos_resnet_fpn_backbone",
    "build_rs_atss_resnet_fpn_backbone",
    "ranking_loss_from_config",
]
