"""COCO and LVIS evaluators whose AP is computed by faster-coco-eval (same numbers, faster).

``faster-coco-eval`` (PyPI, Apache-2.0) reimplements COCOeval's matching and accumulation in C++
and has an LVIS mode; it reproduces pycocotools and lvis-api numbers. Its global
``init_as_pycocotools()`` replaces ``pycocotools`` in ``sys.modules`` and breaks Detectron2
imports, so it is never called here: the evaluators below keep Detectron2's gathering and result
formatting and only swap the evaluation, per evaluator.

* :class:`FastCOCOEvaluator` is :class:`COCOEvaluator` with faster-coco-eval's COCOeval. Unlike
  Detectron2, it also uses it when ``max_dets_per_image != 100`` (Detectron2 then falls back to
  pycocotools).
* :class:`FastLVISEvaluator` is :class:`LVISEvaluator` with faster-coco-eval's LVIS mode instead
  of lvis-api.

The reference implementations are one switch away: ``build_evaluator(..., fast=False)``.
"""

import contextlib
import functools
import io

import numpy as np

from detectron2.evaluation import COCOEvaluator, LVISEvaluator
from detectron2.utils.logger import create_small_table

from .coco_results import COCOResultsMixin

__all__ = [
    "FastCOCOEvaluator",
    "FastLVISEvaluator",
    "evaluate_predictions_on_coco_fast",
    "evaluate_predictions_on_lvis_fast",
]

LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
# faster-coco-eval's stats_as_dict labels (default area ranges) -> Detectron2's metric names.
_LVIS_LABELS = {
    "AP": "AP_all",
    "AP50": "AP_50",
    "AP75": "AP_75",
    "APs": "AP_small",
    "APm": "AP_medium",
    "APl": "AP_large",
    "APr": "APr",
    "APc": "APc",
    "APf": "APf",
}


def _faster_coco_eval():
    """(COCO, COCOeval_faster) of faster-coco-eval, or an ImportError that says what to do."""
    try:
        from faster_coco_eval.core import COCO, COCOeval_faster
    except ImportError as e:
        raise ImportError(
            "The fast evaluators need the PyPI package 'faster-coco-eval' (pip install "
            "faster-coco-eval); build_evaluator(..., fast=False) (dataloader.evaluator.fast=False) "
            "uses the reference implementations instead."
        ) from e
    return COCO, COCOeval_faster


def _for_iou_type(results, iou_type):
    """Copies of the result dicts; for "segm" without "bbox" so that areas are mask areas."""
    results = [dict(r) for r in results]
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    return results


def evaluate_predictions_on_coco_fast(
    coco_gt, coco_results, iou_type, *, img_ids=None, max_dets_per_image=None, kpt_oks_sigmas=()
):
    """
    COCO evaluation of ``coco_results`` with faster-coco-eval's ``COCOeval_faster``; the
    counterpart of Detectron2's ``_evaluate_predictions_on_coco``.

    Args:
        coco_gt (COCO): ground truth (pycocotools' or faster-coco-eval's COCO class both work).
        coco_results (list[dict]): non-empty list of COCO result dicts (bbox in XYWH pixels,
            segmentation as RLE, keypoints as [x, y, v] * K).
        iou_type (str): "bbox", "segm" or "keypoints".
        img_ids (None or list[int]): evaluate on these images only.
        max_dets_per_image (None or list[int]): the 3 ``maxDets`` of COCOeval, [1, 10, 100] by
            default; AP uses the last. Ignored for keypoints (COCO uses 20).
        kpt_oks_sigmas (sequence[float]): OKS sigmas for keypoints; COCO's when empty.

    Returns:
        COCOeval_faster after evaluate/accumulate/summarize: ``stats[:6]`` are AP, AP50, AP75,
        APs, APm, APl as fractions and ``eval["precision"]`` has shape (T, R, K, A, M) as in
        pycocotools.
    """
    _, COCOevalFaster = _faster_coco_eval()
    assert len(coco_results) > 0, "COCO evaluation needs at least one detection"
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(_for_iou_type(coco_results, iou_type))
    coco_eval = COCOevalFaster(coco_gt, coco_dt, iou_type)
    if iou_type != "keypoints":
        max_dets = list(max_dets_per_image) if max_dets_per_image else [1, 10, 100]
        if len(max_dets) < 3:
            raise ValueError("max_dets_per_image must have at least 3 elements, like COCOeval")
        coco_eval.params.maxDets = max_dets
    elif kpt_oks_sigmas:
        coco_eval.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def _limit_dets_per_image(results, max_dets):
    """The ``max_dets`` top-scoring results of each image, as lvis-api's LVISResults keeps them."""
    per_image = {}
    for r in results:
        per_image.setdefault(r["image_id"], []).append(r)
    kept = []
    for anns in per_image.values():
        if len(anns) > max_dets:
            anns = sorted(anns, key=lambda r: r["score"], reverse=True)[:max_dets]
        kept.extend(anns)
    return kept


def evaluate_predictions_on_lvis_fast(lvis_gt, lvis_results, iou_type, max_dets_per_image=None):
    """
    LVIS evaluation with faster-coco-eval (``lvis_style=True``); the counterpart of Detectron2's
    ``_evaluate_predictions_on_lvis`` and of lvis-api's LVISResults + LVISEval.

    Args:
        lvis_gt (faster_coco_eval COCO): LVIS ground truth (images with ``neg_category_ids`` and
            ``not_exhaustive_category_ids``, categories with ``frequency``).
        lvis_results (list[dict]): COCO result dicts with LVIS category ids.
        iou_type (str): "bbox" or "segm".
        max_dets_per_image (None or int): top-scoring detections kept per image over all classes
            (LVIS: 300, the default); negative keeps all.

    Returns:
        dict {metric: value in percent} for AP, AP50, AP75, APs, APm, APl, APr, APc, APf
        (-100 where lvis-api gives -1, e.g. a frequency group without categories; NaN for all
        when there is no detection).
    """
    if len(lvis_results) == 0:
        return {m: float("nan") for m in LVIS_METRICS}
    _, COCOevalFaster = _faster_coco_eval()
    max_dets = 300 if max_dets_per_image is None else int(max_dets_per_image)
    results = _for_iou_type(lvis_results, iou_type)
    if max_dets >= 0:
        results = _limit_dets_per_image(results, max_dets)
    else:
        max_dets = len(results)
    with contextlib.redirect_stdout(io.StringIO()):
        lvis_dt = lvis_gt.loadRes(results)
    lvis_eval = COCOevalFaster(lvis_gt, lvis_dt, iou_type, lvis_style=True)
    lvis_eval.params.maxDets = [max_dets]
    lvis_eval.evaluate()
    lvis_eval.accumulate()
    lvis_eval.summarize()
    stats = lvis_eval.stats_as_dict
    return {m: float(stats[_LVIS_LABELS[m]] * 100) for m in LVIS_METRICS}


class FastCOCOEvaluator(COCOResultsMixin, COCOEvaluator):
    """
    :class:`COCOEvaluator` whose AP comes from faster-coco-eval (identical numbers, several times
    faster on large datasets). Gathering, saved files and the returned metrics are
    COCOEvaluator's.
    """

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        max_dets_per_image=None,
        kpt_oks_sigmas=(),
        allow_cached_coco=True,
    ):
        """
        Args:
            dataset_name, tasks, distributed, output_dir, max_dets_per_image, kpt_oks_sigmas,
                allow_cached_coco: as in :class:`COCOEvaluator`. Its ``use_fast_impl`` (Detectron2's
                own compiled COCOeval) is not an argument: faster-coco-eval replaces it.
        """
        _faster_coco_eval()  # fail at construction, not after a whole inference pass
        super().__init__(
            dataset_name,
            tasks,
            distributed,
            output_dir,
            max_dets_per_image=max_dets_per_image,
            use_fast_impl=False,
            kpt_oks_sigmas=kpt_oks_sigmas,
            allow_cached_coco=allow_cached_coco,
        )

    def _eval_predictions(self, predictions, img_ids=None):
        coco_results = self._coco_results(predictions, "coco_instances_results.json")
        if coco_results is None:
            return
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        self._logger.info("Evaluating predictions with faster-coco-eval ...")
        for task in sorted(tasks):
            assert task in {"bbox", "segm", "keypoints"}, f"Got unknown task: {task}!"
            coco_eval = (
                evaluate_predictions_on_coco_fast(
                    self._coco_api,
                    coco_results,
                    task,
                    img_ids=img_ids,
                    max_dets_per_image=self._max_dets_per_image,
                    kpt_oks_sigmas=self._kpt_oks_sigmas,
                )
                if coco_results
                else None  # as COCOEvaluator: NaN metrics without detections
            )
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )


class FastLVISEvaluator(COCOResultsMixin, LVISEvaluator):
    """
    :class:`LVISEvaluator` whose AP comes from faster-coco-eval's LVIS mode (identical numbers to
    lvis-api, faster, and without lvis-api's ``np.float``). Gathering, saved files and the
    returned metrics are LVISEvaluator's.
    """

    def __init__(self, *args, **kwargs):
        """
        Args:
            as :class:`LVISEvaluator`: dataset_name, tasks, distributed, output_dir and
            max_dets_per_image (per image over all classes, 300 by default).
        """
        _faster_coco_eval()  # fail at construction, not after a whole inference pass
        super().__init__(*args, **kwargs)

    @functools.cached_property
    def _faster_gt(self):
        """faster-coco-eval COCO view of the already loaded LVIS ground truth."""
        COCO, _ = _faster_coco_eval()
        return COCO(self._lvis_api.dataset)

    def _eval_predictions(self, predictions):
        lvis_results = self._coco_results(predictions, "lvis_instances_results.json", lvis=True)
        if lvis_results is None:
            return
        tasks = self._tasks or self._tasks_from_predictions(lvis_results)
        self._logger.info("Evaluating predictions with faster-coco-eval (LVIS) ...")
        for task in sorted(tasks):
            res = evaluate_predictions_on_lvis_fast(
                self._faster_gt, lvis_results, task, max_dets_per_image=self._max_dets_per_image
            )
            self._logger.info(f"Evaluation results for {task}: \n" + create_small_table(res))
            self._results[task] = res
