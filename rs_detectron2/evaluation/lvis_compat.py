"""Detectron2's LVISEvaluator (lvis-api) on numpy >= 1.24.

lvis-api 0.5.3, the last release, calls ``.astype(dtype=np.float)`` in ``LVISEval.accumulate``;
numpy 1.20 deprecated the ``np.float`` alias of the builtin ``float`` and numpy 1.24 removed it, so
every LVIS evaluation with lvis-api ends in ``AttributeError: module 'numpy' has no attribute
'float'`` after inference is done. :class:`LVISAPIEvaluator` puts the alias back while lvis-api
evaluates, only when numpy lacks it, and removes it again afterwards. faster-coco-eval
(:class:`FastLVISEvaluator`) does not need it.
"""

import contextlib

import numpy as np

from detectron2.evaluation import LVISEvaluator

__all__ = ["LVISAPIEvaluator"]


@contextlib.contextmanager
def _numpy_float_alias():
    """``np.float`` (= ``float``, what it used to be) inside the block if numpy lacks it; yields
    True when this call added it (and removes it on exit), False when numpy already had it."""
    added = "float" not in vars(np)
    if added:
        np.float = float
    try:
        yield added
    finally:
        if added:
            del np.float


class LVISAPIEvaluator(LVISEvaluator):
    """
    Detectron2's :class:`LVISEvaluator` (lvis-api's ``LVISEval``, the reference LVIS numbers),
    usable on numpy >= 1.24: numpy's removed ``np.float`` alias exists only while lvis-api
    evaluates. Same arguments and results as LVISEvaluator; ``build_evaluator(..., fast=False)``
    returns it for LVIS datasets.
    """

    def _eval_predictions(self, predictions):
        with _numpy_float_alias():
            super()._eval_predictions(predictions)
