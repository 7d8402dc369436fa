"""rs_detectron2: Rank & Sort Loss for Detectron2."""

__version__ = "0.1.0"
