"""Logging what a head's ranking loss reports besides its losses."""

from detectron2.utils.events import get_event_storage

from ..losses import RankingLoss

__all__ = ["put_ranking_loss_scalars"]


def put_ranking_loss_scalars(ranking_loss: RankingLoss, prefix: str) -> None:
    """Put every :meth:`RankingLoss.scalars` entry (e.g. aLRP's self-balance weight) into the
    current event storage as ``{prefix}/{name}``; nothing for losses without any (RS)."""
    scalars = ranking_loss.scalars()
    if scalars:
        storage = get_event_storage()
        for name, value in scalars.items():
            storage.put_scalar(f"{prefix}/{name}", float(value))
