"""Evaluators: oLRP (the RS paper's second metric) and faster-coco-eval backed COCO / LVIS AP;
``build_evaluator`` picks COCO or LVIS evaluation from a dataset's metadata, fast or stock."""

from .build import build_evaluator
from .coco_results import COCOResultsMixin, coco_results_from_predictions
from .fast_coco import (
    FastCOCOEvaluator,
    FastLVISEvaluator,
    evaluate_predictions_on_coco_fast,
    evaluate_predictions_on_lvis_fast,
)
from .lvis_compat import LVISAPIEvaluator
from .olrp import OLRPEvaluator, match_detections, olrp_from_coco, optimal_lrp
from .thresholds import (
    ClassThresholds,
    count_detection_errors,
    evaluate_and_fit_thresholds,
    lrp_thresholds_evaluator,
    read_thresholds,
    resolve_class_thresholds,
    thresholds_from_evaluator,
    thresholds_from_olrp,
    write_thresholds,
)

__all__ = [
    "build_evaluator",
    "COCOResultsMixin",
    "coco_results_from_predictions",
    "FastCOCOEvaluator",
    "FastLVISEvaluator",
    "evaluate_predictions_on_coco_fast",
    "evaluate_predictions_on_lvis_fast",
    "LVISAPIEvaluator",
    "OLRPEvaluator",
    "olrp_from_coco",
    "optimal_lrp",
    "match_detections",
    "ClassThresholds",
    "count_detection_errors",
    "evaluate_and_fit_thresholds",
    "lrp_thresholds_evaluator",
    "read_thresholds",
    "resolve_class_thresholds",
    "thresholds_from_evaluator",
    "thresholds_from_olrp",
    "write_thresholds",
]
