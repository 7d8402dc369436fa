"""yacs support: :func:`add_rs_config` adds the RS keys. Importing this package registers the RS
heads in Detectron2's registries (they register when ``rs_detectron2.modeling`` is imported) and
the RS-ATSS / RS-PAA backbone builder.

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from rs_detectron2.config import add_rs_config

    cfg = add_rs_config(get_cfg())
    cfg.merge_from_file("configs/yacs/rs_faster_rcnn_R_50_FPN_1x.yaml")
    model = build_model(cfg)
"""

from .defaults import RANKING_LOSSES, add_rs_config, ranking_loss_from_config

from .backbone import build_rs_atss_resnet_fpn_backbone  # isort: skip (registers; after defaults)

__all__ = [
    "RANKING_LOSSES",
    "add_rs_config",
    "build_rs_atss_resnet_fpn_backbone",
    "ranking_loss_from_config",
]
