"""Optimal Localisation-Recall-Precision (oLRP) error for detection and instance segmentation.

Definition (Oksuz, Cam, Kalkan, Akbas, "One Metric to Measure them All: Localisation Recall
Precision (LRP) for Evaluating Visual Detection Tasks", TPAMI 2022, the version reported next to AP
in the Rank & Sort Loss paper; cross-checked against the accumulate() of the authors' code,
github.com/kemaloksuz/LRP-Error, pycocotools/pycocotools/cocoeval.py). For one class, a TP
validation threshold ``tau`` (0.5) and a score threshold ``s``:

* keep the detections with score >= s and match them to the ground truths exactly as COCO
  evaluation does at IoU ``tau`` (greedy by score, at most ``max_dets`` per image and class; a
  detection matched to a crowd ground truth is ignored: neither TP nor FP; crowd ground truths are
  never FNs);
* ``LRP(s) = (sum_TP (1 - IoU) / (1 - tau) + N_FP + N_FN) / (N_TP + N_FP + N_FN)``, in [0, 1];
* ``oLRP = min_s LRP(s)``; the minimising ``s`` is the class's LRP-optimal threshold. Its
  components there are ``oLRP_Loc = mean_TP (1 - IoU)`` (a plain mean, not divided by 1 - tau),
  ``oLRP_FP = N_FP / (N_TP + N_FP)`` and ``oLRP_FN = N_FN / N_GT``.

Classes without (non-crowd) ground truth are skipped; a class with ground truth but no detection
has oLRP 1. The dataset numbers are means over classes: ``oLRP`` and ``oLRP_FN`` over every class
with ground truth, ``oLRP_Loc`` over the classes with at least one TP at their optimal threshold,
``oLRP_FP`` over those with at least one detection there (the other components are undefined,
which is also how the authors' code averages them).

One difference from the authors' code, which searches ``s`` on the grid 0, 0.01, ..., 1: by default
every distinct detection score is tried, which gives the exact minimum. ``score_thrs`` restores a
grid. Ties are broken towards the lowest threshold, as ``argmin`` over an ascending grid does.
"""

import contextlib
import copy
import io
import json
import logging
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from detectron2.evaluation import COCOEvaluator
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

from .coco_results import COCOResultsMixin

__all__ = ["OLRPEvaluator", "match_detections", "optimal_lrp", "olrp_from_coco"]

_IOU_TYPES = ("bbox", "segm")
# COCO's area range "all": every ground truth and detection takes part.
_AREA_ALL = [0.0, 1e5**2]


def optimal_lrp(scores, is_tp, ious, num_gt, tau=0.5, score_thrs=None):
    """
    oLRP of one class from its already-matched detections.

    Args:
        scores (array-like[float], shape (D,)): confidence of every detection that counts (TPs
            and FPs; detections matched to crowd ground truth must be left out).
        is_tp (array-like[bool], shape (D,)): True for a TP (matched at IoU >= tau), False for FP.
        ious (array-like[float], shape (D,)): IoU of each TP with its ground truth, in [tau, 1];
            entries of FPs are not read.
        num_gt (int): number of ground truths that can be missed (crowd ones excluded), > 0.
        tau (float): the TP validation IoU threshold of the matching, in [0, 1).
        score_thrs (None or array-like[float]): candidate score thresholds. None tries every
            distinct score (exact minimum); ``np.linspace(0, 1, 101)`` reproduces the authors' grid.

    Returns:
        dict with ``oLRP``, ``oLRP_Loc``, ``oLRP_FP``, ``oLRP_FN`` (fractions in [0, 1]; Loc is NaN
        without TP and FP is NaN without detection at the optimum), ``threshold`` (the optimal
        score threshold: detections with score >= it are kept; NaN when there is no detection and no
        grid) and the counts ``num_tp``, ``num_fp``, ``num_fn``, ``num_gt`` there.
    """
    if num_gt <= 0:
        raise ValueError(f"oLRP needs at least one ground truth, got num_gt={num_gt}")
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if not (len(scores) == len(is_tp) == len(ious)):
        raise ValueError("scores, is_tp and ious must have the same length")

    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    tp = is_tp[order]
    loc_err = np.where(tp, 1.0 - ious[order], 0.0)
    # Cumulative counts after the first n detections, n = 0..D.
    cum_tp = np.concatenate([[0], np.cumsum(tp)])
    cum_fp = np.concatenate([[0], np.cumsum(~tp)])
    cum_loc = np.concatenate([[0.0], np.cumsum(loc_err)])

    if score_thrs is None:
        thrs = np.unique(sorted_scores)  # ascending
    else:
        thrs = np.sort(np.asarray(score_thrs, dtype=np.float64).reshape(-1))
    if len(thrs) == 0:  # no detection and no grid: everything is missed
        return _lrp_record(1.0, 0, 0, num_gt, 0.0, num_gt, float("nan"))

    # Number of detections with score >= thr (sorted_scores is descending).
    kept = np.searchsorted(-sorted_scores, -thrs, side="right")
    n_tp, n_fp, total_loc = cum_tp[kept], cum_fp[kept], cum_loc[kept]
    n_fn = num_gt - n_tp
    lrp = (total_loc / (1.0 - tau) + n_fp + n_fn) / (n_tp + n_fp + n_fn)
    best = int(np.flatnonzero(lrp <= lrp.min() + 1e-12)[0])  # lowest threshold among ties
    return _lrp_record(
        float(lrp[best]),
        int(n_tp[best]),
        int(n_fp[best]),
        int(n_fn[best]),
        float(total_loc[best]),
        num_gt,
        float(thrs[best]),
    )


def _lrp_record(lrp, n_tp, n_fp, n_fn, total_loc, num_gt, threshold):
    nan = float("nan")
    return {
        "oLRP": lrp,
        "oLRP_Loc": total_loc / n_tp if n_tp > 0 else nan,
        "oLRP_FP": n_fp / (n_tp + n_fp) if n_tp + n_fp > 0 else nan,
        "oLRP_FN": n_fn / num_gt,
        "threshold": threshold,
        "num_tp": n_tp,
        "num_fp": n_fp,
        "num_fn": n_fn,
        "num_gt": int(num_gt),
    }


def _load_results(coco_gt, coco_dt, iou_type):
    """COCO object of the detections; accepts a COCO object or a list of COCO result dicts."""
    if isinstance(coco_dt, COCO):
        return coco_dt
    results = [dict(r) for r in coco_dt]  # loadRes writes into the dicts
    if iou_type == "segm":
        for r in results:
            if "segmentation" not in r:
                raise ValueError("segm oLRP needs a 'segmentation' (RLE) in every result")
            # As Detectron2 does: without "bbox", the instance area is the mask area.
            r.pop("bbox", None)
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    empty = COCO()  # loadRes cannot take an empty list
    empty.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _matched_detections(coco_gt, coco_dt, iou_type, tau, max_dets, img_ids):
    """
    Run COCO's per-image matching at IoU ``tau`` (area "all", ``max_dets`` per image and class).

    Returns:
        dict {category id: (scores (D,), is_tp (D,), ious (D,), num_gt)} for every category of
        ``coco_gt``, where D counts the detections that are TP or FP (ignored ones are dropped).
    """
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    p = ev.params
    p.iouThrs = np.array([tau], dtype=np.float64)
    p.areaRng = [list(_AREA_ALL)]
    p.areaRngLbl = ["all"]
    p.maxDets = [int(max_dets)]
    if img_ids is not None:
        p.imgIds = list(img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()

    num_imgs = len(ev.params.imgIds)
    out = {}
    for k, cat_id in enumerate(ev.params.catIds):
        scores, is_tp, ious, num_gt = [], [], [], 0
        for e in ev.evalImgs[k * num_imgs : (k + 1) * num_imgs]:
            if e is None:  # neither ground truth nor detection of this class in this image
                continue
            num_gt += int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            if len(e["dtIds"]) == 0:
                continue
            match = np.asarray(e["dtMatches"][0]).astype(np.int64)  # matched gt id or 0
            keep = ~np.asarray(e["dtIgnore"][0], dtype=bool)
            tp = match > 0
            iou = np.zeros(len(match))
            if tp.any():
                # ev.ious[img, cat]: rows = detections in the order of e["dtIds"] (score-sorted,
                # truncated to maxDets), columns = the image's ground truths of the class in
                # coco_gt's order, which getAnnIds returns (e["gtIds"] is re-sorted by ignore).
                mat = np.asarray(ev.ious[e["image_id"], cat_id])
                gt_ids = coco_gt.getAnnIds(imgIds=[e["image_id"]], catIds=[cat_id])
                col = {g: j for j, g in enumerate(gt_ids)}
                rows = np.flatnonzero(tp)
                iou[rows] = mat[rows, [col[int(m)] for m in match[rows]]]
            scores.append(np.asarray(e["dtScores"], dtype=np.float64)[keep])
            is_tp.append(tp[keep])
            ious.append(iou[keep])
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
        out[cat_id] = (cat(scores, np.float64), cat(is_tp, bool), cat(ious, np.float64), num_gt)
    return out


def match_detections(coco_gt, coco_dt, iou_type="bbox", tau=0.5, max_dets=100, img_ids=None):
    """
    The per-class matching oLRP is computed from (COCO's greedy matching at IoU ``tau``).

    Args:
        coco_gt, coco_dt, iou_type, tau, max_dets, img_ids: as in :func:`olrp_from_coco`.

    Returns:
        dict {category id: (scores (D,), is_tp (D,), ious (D,), num_gt)} for every category of
        ``coco_gt``: the D detections that are TP or FP (those matched to crowd ground truth are
        left out), whether each is a TP, its IoU (TPs only) and the number of non-crowd ground
        truths.
    """
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type must be one of {_IOU_TYPES}, got {iou_type!r}")
    coco_dt = _load_results(coco_gt, coco_dt, iou_type)
    return _matched_detections(coco_gt, coco_dt, iou_type, tau, max_dets, img_ids)


def olrp_from_coco(
    coco_gt, coco_dt, iou_type="bbox", tau=0.5, max_dets=100, img_ids=None, score_thrs=None
):
    """
    oLRP of COCO-format detections, per class and averaged (the module docstring has the
    definition). Needs only pycocotools objects.

    Args:
        coco_gt (pycocotools.coco.COCO): ground truth. Its annotations are modified in place the
            way ``COCOeval`` modifies them (``ignore`` flags, ``segm`` polygons turned into RLE).
        coco_dt (COCO or list[dict]): detections, as ``coco_gt.loadRes(...)`` or as a list of COCO
            result dicts (``image_id``, ``category_id``, ``score`` and ``bbox`` in XYWH pixels or
            ``segmentation`` as RLE); the list may be empty.
        iou_type (str): "bbox" or "segm".
        tau (float): TP validation IoU threshold; 0.5 in the paper.
        max_dets (int): at most this many top-scoring detections per image and class (COCO: 100).
        img_ids (None or list[int]): evaluate on these images only; default all of ``coco_gt``.
        score_thrs (None or array-like): see :func:`optimal_lrp`.

    Returns:
        dict with the class means ``oLRP``, ``oLRP_Loc``, ``oLRP_FP``, ``oLRP_FN`` (fractions in
        [0, 1], lower is better; NaN when no class has ground truth) and ``per_class``:
        {category id: dict(name=..., **optimal_lrp(...))} for every category with ground truth.
    """
    matched = match_detections(coco_gt, coco_dt, iou_type, tau, max_dets, img_ids)

    per_class = {}
    for cat_id, (scores, is_tp, ious, num_gt) in matched.items():
        if num_gt == 0:
            continue
        rec = optimal_lrp(scores, is_tp, ious, num_gt, tau=tau, score_thrs=score_thrs)
        cat_id = int(cat_id)
        per_class[cat_id] = {"name": coco_gt.cats[cat_id].get("name", str(cat_id)), **rec}

    def mean(key):
        vals = [r[key] for r in per_class.values() if np.isfinite(r[key])]
        return float(np.mean(vals)) if vals else float("nan")

    out = {key: mean(key) for key in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN")}
    out["per_class"] = per_class
    return out


class OLRPEvaluator(COCOResultsMixin, COCOEvaluator):
    """
    oLRP (and its components) of instance detection / segmentation outputs, in percent like AP
    (lower is better). Predictions are gathered and converted exactly as :class:`COCOEvaluator`
    does (it works in multi-process evaluation and with any dataset COCOEvaluator accepts); only
    the metric differs. Returns ``{"bbox": {"oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN",
    "oLRP-<class name>", ...}, "segm": {...}}``. With ``output_dir`` the per-class details,
    including each class's LRP-optimal score threshold, are also written to
    ``olrp_results.json`` (fractions, not percent); :meth:`olrp_details` returns them too.
    """

    def __init__(
        self,
        dataset_name,
        tasks=("bbox",),
        *,
        output_dir=None,
        distributed=True,
        max_dets_per_image=100,
        tau=0.5,
        allow_cached_coco=True,
        results_suffix="",
    ):
        """
        Args:
            dataset_name (str): a registered dataset, with a COCO ``json_file`` in its metadata or
                convertible to COCO format (then ``output_dir`` is required, see COCOEvaluator).
            tasks (tuple[str]): a subset of ("bbox", "segm").
            output_dir (str or None): where to write predictions and ``olrp_results.json``.
            distributed (bool): gather predictions from all ranks and evaluate on the main one.
            max_dets_per_image (int): top-scoring detections kept per image and class (COCO: 100).
            tau (float): TP validation IoU threshold of LRP (0.5 in the paper).
            allow_cached_coco (bool): see COCOEvaluator.
            results_suffix (str): appended to the task names of the results (``"bbox" +
                suffix``), so that this evaluator can run beside a COCOEvaluator in one
                ``DatasetEvaluators`` (which refuses two results under one name).
        """
        tasks = tuple(tasks)
        if not tasks or any(t not in _IOU_TYPES for t in tasks):
            raise ValueError(f"OLRPEvaluator tasks must be a subset of {_IOU_TYPES}, got {tasks}")
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            max_dets_per_image=max_dets_per_image,
            use_fast_impl=False,
            allow_cached_coco=allow_cached_coco,
        )
        self._logger = logging.getLogger(__name__)
        self._olrp_max_dets = int(max_dets_per_image)
        self._tau = float(tau)
        self._results_suffix = str(results_suffix)
        self._details = None

    def olrp_details(self):
        """The full results of the last :meth:`evaluate` on this process: {task:
        ``olrp_from_coco(...)`` output, with ``per_class`` (dataset category id -> record with
        the LRP-optimal ``threshold``)}; None before it, on processes other than the main one,
        and when the dataset has no annotations."""
        return self._details

    def _eval_box_proposals(self, predictions):
        # oLRP is defined for class-labelled detections; proposals are left to COCOEvaluator.
        pass

    def _class_name(self, cat_id, fallback):
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        names = self._metadata.get("thing_classes", None)
        if mapping is not None and names is not None and cat_id in mapping:
            return names[mapping[cat_id]]
        return fallback

    def _eval_predictions(self, predictions, img_ids=None):
        coco_results = self._coco_results(predictions)
        if coco_results is None:
            return
        details = {}
        for task in self._tasks:
            res = olrp_from_coco(
                self._coco_api,
                coco_results,
                task,
                tau=self._tau,
                max_dets=self._olrp_max_dets,
                img_ids=img_ids,
            )
            details[task] = res
            self._results[task + self._results_suffix] = self._derive_olrp_results(res, task)
        self._details = details
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(os.path.join(self._output_dir, "olrp_results.json"), "w") as f:
                json.dump(_json_safe(details), f)

    def _derive_olrp_results(self, res, task):
        """Percent results of one task, with a per-class table in the log."""
        results = {k: 100.0 * res[k] for k in ("oLRP", "oLRP_Loc", "oLRP_FP", "oLRP_FN")}
        self._logger.info(f"oLRP results for {task}: \n" + create_small_table(results))
        rows = []
        for cat_id, rec in res["per_class"].items():
            name = self._class_name(cat_id, rec["name"])
            results[f"oLRP-{name}"] = 100.0 * rec["oLRP"]
            rows.append((name, 100.0 * rec["oLRP"], rec["threshold"]))
        if rows:
            table = tabulate(
                rows, headers=["category", "oLRP", "thr"], tablefmt="pipe", floatfmt=".3f"
            )
            self._logger.info(f"Per-category {task} oLRP and LRP-optimal thresholds: \n" + table)
        return results


def _json_safe(obj):
    """Nested dicts with NaN replaced by None and int keys kept as strings."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
