"""Evaluators: oLRP (the RS paper's second metric) and faster-coco-eval backed COCO / LVIS AP."""

from .fast_coco import (
    FastCOCOEvaluator,
    FastLVISEvaluator,
    coco_results_from_predictions,
    evaluate_predictions_on_coco_fast,
    evaluate_predictions_on_lvis_fast,
)
from .olrp import OLRPEvaluator, olrp_from_coco, optimal_lrp

__all__ = [
    "OLRPEvaluator",
    "olrp_from_coco",
    "optimal_lrp",
    "FastCOCOEvaluator",
    "FastLVISEvaluator",
    "coco_results_from_predictions",
    "evaluate_predictions_on_coco_fast",
    "evaluate_predictions_on_lvis_fast",
]
