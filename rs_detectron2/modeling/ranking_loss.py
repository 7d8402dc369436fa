"""The ranking loss of a yacs config: a registry of builders, one per value of
``MODEL.RS.RANKING_LOSS.NAME``.

The heads' ``from_config`` call :func:`build_ranking_loss`; a new ranking loss joins the yacs
configs by registering a builder under the name the config will use::

    @RANKING_LOSS_REGISTRY.register()
    def MyLoss(cfg):
        return MyRankingLoss(pool=cfg.MODEL.RS.RANKING_LOSS.POOL)

LazyConfigs do not need the registry: they give the loss object itself (``ranking_loss=L(...)``).
"""

from detectron2.utils.registry import Registry

from ..losses import ALRPLoss, APLoss, RankingLoss, RankSortLoss
from .registry import registered

__all__ = ["RANKING_LOSS_REGISTRY", "build_ranking_loss"]

RANKING_LOSS_REGISTRY = Registry("RANKING_LOSS")
RANKING_LOSS_REGISTRY.__doc__ = """
Builders of the ranking losses, by the value of ``cfg.MODEL.RS.RANKING_LOSS.NAME``. A builder is
called as ``builder(cfg)`` and returns a new :class:`~rs_detectron2.losses.RankingLoss`.
"""


def _shared_options(cfg) -> dict:
    """The options every ranking loss takes: its pool, and its delta unless the config leaves it
    to the loss (``DELTA: None``: RS 0.5, AP / aLRP 1.0)."""
    node = cfg.MODEL.RS.RANKING_LOSS
    options = {"pool": node.POOL}
    if node.DELTA is not None:
        options["delta"] = node.DELTA
    return options


@RANKING_LOSS_REGISTRY.register()
def RS(cfg) -> RankSortLoss:
    """Rank & Sort loss (Oksuz et al. 2021)."""
    return RankSortLoss(**_shared_options(cfg))


@RANKING_LOSS_REGISTRY.register()
def AP(cfg) -> APLoss:
    """AP loss (Chen et al. 2019), its box loss weighted by ``AP_BOX_WEIGHT``."""
    return APLoss(box_weight=cfg.MODEL.RS.RANKING_LOSS.AP_BOX_WEIGHT, **_shared_options(cfg))


@RANKING_LOSS_REGISTRY.register()
def aLRP(cfg) -> ALRPLoss:
    """aLRP loss (Oksuz et al. 2020) with its self-balance options ``ALRP_*``."""
    node = cfg.MODEL.RS.RANKING_LOSS
    return ALRPLoss(
        tau=node.ALRP_TAU,
        period=node.ALRP_PERIOD,
        init_weight=node.ALRP_INIT_WEIGHT,
        **_shared_options(cfg),
    )


def build_ranking_loss(cfg) -> RankingLoss:
    """The ranking loss of ``cfg.MODEL.RS.RANKING_LOSS`` (a new module for every head).

    Args:
        cfg: a yacs config with :func:`rs_detectron2.config.add_rs_config`'s keys.
    Returns:
        the registered builder's loss (``RS``: :class:`RankSortLoss`, ``AP``: :class:`APLoss`,
        ``aLRP``: :class:`ALRPLoss`).
    Raises:
        ValueError: ``NAME`` is not in :data:`RANKING_LOSS_REGISTRY`.
    """
    key = "MODEL.RS.RANKING_LOSS.NAME"
    return registered(RANKING_LOSS_REGISTRY, cfg.MODEL.RS.RANKING_LOSS.NAME, key)(cfg)
