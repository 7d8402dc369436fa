"""COCO and LVIS evaluators whose AP is computed by faster-coco-eval (same numbers, faster).

``faster-coco-eval`` (PyPI, Apache-2.0) reimplements COCOeval's matching and accumulation in C++
and has an LVIS mode; it reproduces pycocotools and lvis-api numbers. Its global
``init_as_pycocotools()`` replaces ``pycocotools`` in ``sys.modules`` and breaks Detectron2
imports, so it is never called here: the evaluators below keep Detectron2's gathering and result
formatting and only swap the evaluation class, per evaluator.

* :class:`FastCOCOEvaluator` is :class:`COCOEvaluator` with ``backend="faster_coco_eval"`` (default)
  or ``"pycocotools"`` (exactly Detectron2's own path). Unlike Detectron2, the fast backend is also
  used when ``max_dets_per_image != 100`` (Detectron2 then falls back to pycocotools).
* :class:`FastLVISEvaluator` is :class:`LVISEvaluator` with ``backend="faster_coco_eval"`` (default)
  or ``"lvis"`` (lvis-api; needs ``np.float`` on numpy >= 1.24, see the Detectron2 notes).
"""

import contextlib
import io
import itertools
import json
import os

import numpy as np

from detectron2.evaluation import COCOEvaluator, LVISEvaluator
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

__all__ = [
    "FastCOCOEvaluator",
    "FastLVISEvaluator",
    "coco_results_from_predictions",
    "evaluate_predictions_on_coco_fast",
    "evaluate_predictions_on_lvis_fast",
]

COCO_BACKENDS = ("faster_coco_eval", "pycocotools")
LVIS_BACKENDS = ("faster_coco_eval", "lvis")
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
            "backend='faster_coco_eval' needs the PyPI package 'faster-coco-eval' "
            "(pip install faster-coco-eval); pass backend='pycocotools' (COCO) or "
            "backend='lvis' (LVIS) to use the reference implementations instead."
        ) from e
    return COCO, COCOeval_faster


def coco_results_from_predictions(predictions, metadata, *, lvis=False):
    """
    Flatten the per-image predictions of a COCO-style evaluator into COCO result dicts with the
    dataset's own category ids.

    Args:
        predictions (list[dict]): as built by ``COCOEvaluator.process``: each dict has
            "instances", a list of COCO result dicts whose "category_id" is the contiguous id
            (0..K-1) the model predicts.
        metadata (Metadata): the dataset's metadata. With ``thing_dataset_id_to_contiguous_id``
            ids are mapped back through it.
        lvis (bool): without that mapping, LVIS category ids are the contiguous ids + 1 (as in
            Detectron2's LVISEvaluator); COCO ones are kept.

    Returns:
        list[dict]: new dicts (the inputs are not modified).
    """
    results = [dict(r) for r in itertools.chain(*[p["instances"] for p in predictions])]
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if mapping is not None:
        reverse = {v: k for k, v in mapping.items()}
        for r in results:
            if r["category_id"] not in reverse:
                raise ValueError(
                    f"A prediction has class={r['category_id']}, but the dataset only has "
                    f"{len(reverse)} classes (contiguous ids {sorted(reverse)})."
                )
            r["category_id"] = reverse[r["category_id"]]
    elif lvis:
        for r in results:
            r["category_id"] += 1
    return results


def results_to_evaluate(evaluator, predictions, results_file=None, *, lvis=False):
    """
    The common start of an evaluator's ``_eval_predictions`` (Detectron2's COCO and LVIS
    evaluators begin the same way): flatten ``predictions`` into COCO result dicts with the
    dataset's category ids, save them as ``<output_dir>/<results_file>`` when both are set, and
    check that the dataset has annotations.

    Args:
        evaluator (COCOEvaluator or LVISEvaluator): reads its ``_metadata``, ``_output_dir``,
            ``_logger`` and ``_do_evaluation``.
        predictions (list[dict]): as gathered by the evaluator's ``process``.
        results_file (str or None): file name of the saved results; None saves nothing.
        lvis (bool): see :func:`coco_results_from_predictions`.

    Returns:
        list[dict] or None: the results, or None (after logging why) when there is no ground truth
        to evaluate them against.
    """
    results = coco_results_from_predictions(predictions, evaluator._metadata, lvis=lvis)
    if evaluator._output_dir and results_file:
        path = os.path.join(evaluator._output_dir, results_file)
        evaluator._logger.info(f"Saving results to {path}")
        with PathManager.open(path, "w") as f:
            f.write(json.dumps(results))
    if not evaluator._do_evaluation:
        evaluator._logger.info("Annotations are not available for evaluation.")
        return None
    return results


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


def _check_backend(backend, allowed):
    if backend not in allowed:
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}")
    if backend == "faster_coco_eval":
        _faster_coco_eval()  # fail at construction, not after a whole inference pass


class FastCOCOEvaluator(COCOEvaluator):
    """
    :class:`COCOEvaluator` whose AP comes from faster-coco-eval (identical numbers, several times
    faster on large datasets). Same arguments as COCOEvaluator plus ``backend``; with
    ``backend="pycocotools"`` it is exactly ``COCOEvaluator(..., use_fast_impl=use_fast_impl)``.
    """

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        max_dets_per_image=None,
        use_fast_impl=False,
        kpt_oks_sigmas=(),
        allow_cached_coco=True,
        backend="faster_coco_eval",
    ):
        """
        Args:
            dataset_name, tasks, distributed, output_dir, max_dets_per_image, kpt_oks_sigmas,
                allow_cached_coco: as in :class:`COCOEvaluator`.
            use_fast_impl (bool): only for ``backend="pycocotools"``: Detectron2's compiled
                COCOeval_opt when it is built (as in COCOEvaluator); the default False keeps the
                official pycocotools.
            backend (str): "faster_coco_eval" or "pycocotools".
        """
        _check_backend(backend, COCO_BACKENDS)
        self._backend = backend
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            max_dets_per_image=max_dets_per_image,
            use_fast_impl=use_fast_impl and backend == "pycocotools",
            kpt_oks_sigmas=kpt_oks_sigmas,
            allow_cached_coco=allow_cached_coco,
        )

    def _eval_predictions(self, predictions, img_ids=None):
        if self._backend == "pycocotools":
            return super()._eval_predictions(predictions, img_ids=img_ids)
        coco_results = results_to_evaluate(self, predictions, "coco_instances_results.json")
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


class FastLVISEvaluator(LVISEvaluator):
    """
    :class:`LVISEvaluator` whose AP comes from faster-coco-eval's LVIS mode (identical numbers to
    lvis-api, faster, and no ``np.float`` issue). Same arguments as LVISEvaluator plus
    ``backend``; with ``backend="lvis"`` it is exactly LVISEvaluator.
    """

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        max_dets_per_image=None,
        backend="faster_coco_eval",
    ):
        """
        Args:
            dataset_name, tasks, distributed, output_dir, max_dets_per_image: as in
                :class:`LVISEvaluator` (max_dets_per_image: per image over all classes, 300).
            backend (str): "faster_coco_eval" or "lvis".
        """
        _check_backend(backend, LVIS_BACKENDS)
        self._backend = backend
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            max_dets_per_image=max_dets_per_image,
        )
        self._fast_gt = None

    def _faster_gt(self):
        """faster-coco-eval COCO view of the already loaded LVIS ground truth (built once)."""
        if self._fast_gt is None:
            COCO, _ = _faster_coco_eval()
            self._fast_gt = COCO(self._lvis_api.dataset)
        return self._fast_gt

    def _eval_predictions(self, predictions):
        if self._backend == "lvis":
            return super()._eval_predictions(predictions)
        lvis_results = results_to_evaluate(
            self, predictions, "lvis_instances_results.json", lvis=True
        )
        if lvis_results is None:
            return
        tasks = self._tasks or self._tasks_from_predictions(lvis_results)
        self._logger.info("Evaluating predictions with faster-coco-eval (LVIS) ...")
        for task in sorted(tasks):
            res = evaluate_predictions_on_lvis_fast(
                self._faster_gt(), lvis_results, task, max_dets_per_image=self._max_dets_per_image
            )
            self._logger.info(f"Evaluation results for {task}: \n" + create_small_table(res))
            self._results[task] = res
