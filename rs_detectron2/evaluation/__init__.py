"""Evaluators: oLRP (the RS paper's second metric) and faster-coco-eval backed COCO / LVIS AP;
``build_evaluator`` picks COCO or LVIS evaluation from a dataset's metadata."""

from .build import build_evaluator
from .fast_coco import (
    FastCOCOEvaluator,
    FastLVISEvaluator,
    coco_results_from_predictions,
    evaluate_predictions_on_coco_fast,
    evaluate_predictions_on_lvis_fast,
)
from .lvis_compat import ensure_lvis_numpy_compat
from .olrp import OLRPEvaluator, olrp_from_coco, optimal_lrp

__all__ = [
    "build_evaluator",
    "ensure_lvis_numpy_compat",
    "OLRPEvaluator",
    "olrp_from_coco",
    "optimal_lrp",
    "FastCOCOEvaluator",
    "FastLVISEvaluator",
    "coco_results_from_predictions",
    "evaluate_predictions_on_coco_fast",
    "evaluate_predictions_on_lvis_fast",
]
