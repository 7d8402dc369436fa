"""numpy >= 1.24 compatibility for lvis-api 0.5.3 (the last release).

``lvis.eval.LVISEval.accumulate`` calls ``.astype(dtype=np.float)``; numpy 1.20 deprecated the
``np.float`` alias of the builtin ``float`` and numpy 1.24 removed it, so every LVIS evaluation
with lvis-api ends in ``AttributeError: module 'numpy' has no attribute 'float'`` after inference
is done.
:func:`ensure_lvis_numpy_compat` puts the alias back (``np.float = float``, exactly what it used to
be) if, and only if, numpy lacks it. It is called before any lvis-api evaluation this package builds
(:func:`rs_detectron2.evaluation.build_evaluator`); call it yourself before using Detectron2's
``LVISEvaluator`` directly. The faster-coco-eval backend does not need it.
"""

import numpy as np

__all__ = ["ensure_lvis_numpy_compat"]


def ensure_lvis_numpy_compat() -> bool:
    """Restore ``numpy.float`` (= ``float``) when numpy no longer has it.

    Returns:
        bool: True if the alias was added by this call, False if numpy already had it.
    """
    if "float" in vars(np):
        return False
    np.float = float  # the removed alias, for lvis-api only
    return True
