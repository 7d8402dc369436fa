"""Per-class score thresholds at the LRP-optimal operating point, as a file a predictor reads.

The oLRP evaluation (:mod:`rs_detectron2.evaluation.olrp`) finds, for each class, the score
threshold ``s`` that minimises the class's LRP error (Oksuz et al., "One Metric to Measure them All:
Localisation Recall Precision (LRP) for Evaluating Visual Detection Tasks", TPAMI 2022): keeping the
detections with score >= s balances false positives, misses and localisation error of that class.
This module fits those thresholds in an evaluation pass (:func:`lrp_thresholds_evaluator`, then
:func:`thresholds_from_evaluator`; ``train_net.py --eval-only --lrp-thresholds-out FILE`` runs it),
writes them to a JSON file and reads them back for deployment.

The file (``"format": "rs_detectron2-olrp-thresholds"``, ``"version": 1``)::

    {"format": ..., "version": 1, "task": "bbox", "tau": 0.5,
     "source": {"evaluation": ..., "dataset": ..., "weights": ..., "config": ...},
     "oLRP": 0.62, "fallback_threshold": 0.41,
     "classes": [{"id": 0, "name": "disc", "dataset_id": 1, "threshold": 0.43, "oLRP": 0.55,
                  "num_tp": 30, "num_fp": 4, "num_fn": 3, "num_gt": 33}, ...]}

``id`` is the class index the model predicts (0..K-1), ``dataset_id`` the evaluation dataset's
category id. A class the evaluation says nothing about gets ``"threshold": null`` and a ``reason``:
no ground truth of it in the evaluation set, or no true positive at any threshold (its LRP is 1
whatever the threshold). Predictors use ``fallback_threshold`` for those classes: the median of the
thresholds that were found, the typical operating point of this model.
"""

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from .olrp import OLRPEvaluator, match_detections

__all__ = [
    "THRESHOLDS_FORMAT",
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

THRESHOLDS_FORMAT = "rs_detectron2-olrp-thresholds"
THRESHOLDS_VERSION = 1
NO_GROUND_TRUTH = "no ground truth of this class in the evaluation set"
NO_TRUE_POSITIVE = "no true positive at any threshold (LRP 1 whatever the threshold)"


@dataclass(frozen=True)
class ClassThresholds:
    """Per-class score thresholds read from a thresholds file.

    Attributes:
        thresholds: K floats, the threshold of class i at index i (the fallback where the file
            has none).
        names: the K class names of the file.
        fallback: the threshold used for the classes without one of their own.
        source: where the thresholds came from (evaluation, dataset, weights, config).
        path: the file they were read from.
    """

    thresholds: Tuple[float, ...]
    names: Tuple[str, ...]
    fallback: float
    source: Dict[str, str] = field(default_factory=dict)
    path: str = ""


def thresholds_from_olrp(
    per_class: Mapping[int, Mapping],
    class_names: Sequence[str],
    *,
    dataset_ids: Optional[Sequence[int]] = None,
    task: str = "bbox",
    tau: float = 0.5,
    source: Optional[Mapping[str, str]] = None,
) -> dict:
    """The thresholds document of one oLRP evaluation.

    Args:
        per_class: ``olrp_from_coco(...)["per_class"]``: {dataset category id: record with
            ``threshold``, ``oLRP``, ``num_tp``, ``num_fp``, ``num_fn``, ``num_gt``}; classes
            without ground truth are absent.
        class_names: the K class names in the model's order (``thing_classes``).
        dataset_ids: the dataset category id of each of the K classes (the inverse of
            ``thing_dataset_id_to_contiguous_id``); None means class i has id i.
        task: "bbox" or "segm", the oLRP the thresholds minimise.
        tau: the TP validation IoU of that oLRP.
        source: strings saying where the evaluation came from (``dataset``, ``weights``, ...).

    Returns:
        dict: the JSON document described in the module docstring.

    Raises:
        ValueError: when no class has a threshold (no true positive at all), or the lengths of
        ``class_names`` and ``dataset_ids`` differ.
    """
    names = [str(n) for n in class_names]
    ids = list(range(len(names))) if dataset_ids is None else [int(i) for i in dataset_ids]
    if len(ids) != len(names):
        raise ValueError(f"{len(names)} class names but {len(ids)} dataset ids")
    classes = []
    for k, (name, dataset_id) in enumerate(zip(names, ids)):
        entry = {"id": k, "name": name, "dataset_id": dataset_id}
        rec = per_class.get(dataset_id)
        if rec is None:
            entry.update(threshold=None, reason=NO_GROUND_TRUTH)
        else:
            counts = {key: int(rec[key]) for key in ("num_tp", "num_fp", "num_fn", "num_gt")}
            if counts["num_tp"] == 0 or not math.isfinite(rec["threshold"]):
                entry.update(threshold=None, reason=NO_TRUE_POSITIVE, oLRP=float(rec["oLRP"]))
            else:
                entry.update(threshold=float(rec["threshold"]), oLRP=float(rec["oLRP"]))
            entry.update(counts)
        classes.append(entry)
    found = [c["threshold"] for c in classes if c["threshold"] is not None]
    if not found:
        raise ValueError(
            "the oLRP evaluation found no true positive of any class, so there is no LRP-optimal "
            "threshold to write; evaluate a trained model"
        )
    olrp = [c["oLRP"] for c in classes if "oLRP" in c]
    return {
        "format": THRESHOLDS_FORMAT,
        "version": THRESHOLDS_VERSION,
        "task": task,
        "tau": float(tau),
        "source": {k: str(v) for k, v in (source or {}).items()},
        "oLRP": float(np.mean(olrp)),
        "fallback_threshold": float(statistics.median(found)),
        "classes": classes,
    }


def lrp_thresholds_evaluator(dataset_name: str, output_dir: Optional[str] = None) -> OLRPEvaluator:
    """The evaluator whose results :func:`thresholds_from_evaluator` reads: box oLRP at IoU 0.5,
    100 detections per image, its results named ``bbox_oLRP`` so that it runs beside the config's
    COCO evaluator in one ``DatasetEvaluators`` (one inference pass).

    Args:
        dataset_name: the registered evaluation dataset.
        output_dir: where it writes ``olrp_results.json`` (and COCO-format predictions); None
            writes nothing.
    """
    return OLRPEvaluator(
        dataset_name, tasks=("bbox",), output_dir=output_dir, results_suffix="_oLRP"
    )


def thresholds_from_evaluator(
    evaluator: OLRPEvaluator, dataset_name: str, source: Optional[Mapping[str, str]] = None
) -> dict:
    """The thresholds document (:func:`thresholds_from_olrp`) of an evaluator of
    :func:`lrp_thresholds_evaluator` after its evaluation, on the main process; the classes and
    their dataset category ids are those of ``dataset_name``'s metadata.

    Raises:
        ValueError: the dataset has no annotations (nothing was evaluated), or no class has a
        threshold (see :func:`thresholds_from_olrp`).
    """
    details = evaluator.olrp_details()
    if details is None:
        raise ValueError(f"dataset {dataset_name} has no annotations to evaluate")
    metadata = MetadataCatalog.get(dataset_name)
    id_map = metadata.get("thing_dataset_id_to_contiguous_id", None)
    return thresholds_from_olrp(
        details["bbox"]["per_class"],
        metadata.thing_classes,
        dataset_ids=sorted(id_map, key=id_map.get) if id_map else None,
        source=source,
    )


def evaluate_and_fit_thresholds(
    model,
    data_loader,
    evaluators: Sequence,
    dataset_name: str,
    path: str,
    source: Optional[Mapping[str, str]] = None,
    output_dir: Optional[str] = None,
) -> dict:
    """Evaluate ``model`` with ``evaluators`` and box oLRP in one inference pass, log the results,
    and write each class's LRP-optimal score threshold to ``path`` (main process only).

    Args:
        model: the model to evaluate (in eval mode inside ``inference_on_dataset``).
        data_loader: the test loader of ``dataset_name``.
        evaluators: the config's evaluators (may be empty).
        dataset_name: the one registered dataset evaluated: its classes and category ids name the
            thresholds.
        path: the thresholds file written (:func:`write_thresholds`).
        source: what made the file (command, weights, ...), stored in it.
        output_dir: where the oLRP evaluator writes its results; None writes nothing.
    Returns:
        the evaluation results (the config's evaluators' and ``bbox_oLRP``).
    Raises:
        ValueError: as :func:`thresholds_from_evaluator` (after the results are logged).
    """
    olrp = lrp_thresholds_evaluator(dataset_name, output_dir=output_dir)
    results = inference_on_dataset(model, data_loader, DatasetEvaluators([*evaluators, olrp]))
    print_csv_format(results)
    if comm.is_main_process():
        write_thresholds(path, thresholds_from_evaluator(olrp, dataset_name, source))
    return results


def write_thresholds(path: str, document: Mapping) -> str:
    """Write a document of :func:`thresholds_from_olrp` to ``path`` (folders are created).

    Returns:
        str: ``path``.
    """
    folder = os.path.dirname(path)
    if folder:
        PathManager.mkdirs(folder)
    with PathManager.open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    return path


def _bad(path: str, what: str) -> ValueError:
    return ValueError(f"{path} is not a valid oLRP thresholds file: {what}")


def _finite_score(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_thresholds(path: str, class_names: Optional[Sequence[str]] = None) -> ClassThresholds:
    """Read and check a thresholds file written by :func:`write_thresholds`.

    Args:
        path: the JSON file.
        class_names: the model's class names (``thing_classes`` of its metadata); when given, the
            file must have the same classes in the same order.

    Returns:
        ClassThresholds: one threshold per class, the fallback filled in.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a thresholds file, or its classes differ from ``class_names``
        (the message names the differences and the dataset the file came from).
    """
    if not PathManager.isfile(path):
        raise FileNotFoundError(f"oLRP thresholds file {path} does not exist")
    with PathManager.open(path) as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise _bad(path, f"not JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != THRESHOLDS_FORMAT:
        raise _bad(
            path,
            f'no "format": "{THRESHOLDS_FORMAT}" (train_net.py --eval-only '
            "--lrp-thresholds-out FILE writes one)",
        )
    if doc.get("version") != THRESHOLDS_VERSION:
        raise _bad(path, f"version {doc.get('version')!r}, this reader knows {THRESHOLDS_VERSION}")
    classes = doc.get("classes")
    fallback = doc.get("fallback_threshold")
    if not isinstance(classes, list) or not classes:
        raise _bad(path, 'no "classes" list')
    if not _finite_score(fallback):
        raise _bad(path, f"fallback_threshold {fallback!r} is not a number")
    by_id = {}
    for c in classes:
        if not isinstance(c, dict) or not {"id", "name", "threshold"} <= set(c):
            raise _bad(path, f"class entry {c!r} lacks id, name or threshold")
        if c["threshold"] is not None and not _finite_score(c["threshold"]):
            raise _bad(path, f"class {c['name']!r} has threshold {c['threshold']!r}")
        by_id[c["id"]] = c
    if len(by_id) != len(classes) or set(by_id) != set(range(len(classes))):
        raise _bad(path, f"class ids must be 0..{len(classes) - 1}, each once")
    ordered = [by_id[k] for k in range(len(classes))]
    names = tuple(str(c["name"]) for c in ordered)
    source = {str(k): str(v) for k, v in (doc.get("source") or {}).items()}
    if class_names is not None:
        _check_names(path, names, [str(n) for n in class_names], source.get("dataset"))
    thresholds = tuple(
        float(fallback) if c["threshold"] is None else float(c["threshold"]) for c in ordered
    )
    return ClassThresholds(thresholds, names, float(fallback), source, path)


def _check_names(path, file_names, model_names, dataset):
    origin = f" (it was written on dataset {dataset})" if dataset else ""
    if len(file_names) != len(model_names):
        raise ValueError(
            f"{path} has thresholds for {len(file_names)} classes ({', '.join(file_names)}) but "
            f"the model has {len(model_names)} ({', '.join(model_names)}){origin}. Use a "
            "thresholds file written for this model's classes."
        )
    diff = [
        f"class {k}: {a!r} in the file, {b!r} in the model"
        for k, (a, b) in enumerate(zip(file_names, model_names))
        if a != b
    ]
    if diff:
        raise ValueError(
            f"{path} does not have the model's classes{origin}: " + "; ".join(diff[:5])
        )


def resolve_class_thresholds(
    spec: Mapping[Union[int, str], float], class_names: Optional[Sequence[str]], num_classes: int
) -> List[Optional[float]]:
    """Per-class thresholds from a dict keyed by class index or class name.

    Args:
        spec: {class index (0..K-1) or class name: threshold}.
        class_names: the model's class names, needed for name keys; may be None.
        num_classes: K.

    Returns:
        list of K entries: the class's threshold, or None where ``spec`` has none.

    Raises:
        ValueError: an unknown name, an index out of range, a class given twice or a threshold
        that is not a finite number.
    """
    out: List[Optional[float]] = [None] * num_classes
    names = list(class_names or [])
    for key, value in spec.items():
        if isinstance(key, str) and not key.isdigit():
            if key not in names:
                raise ValueError(f"class thresholds: no class named {key!r}; the model has {names}")
            k = names.index(key)
        else:
            k = int(key)
            if not 0 <= k < num_classes:
                raise ValueError(f"class thresholds: class index {k} not in 0..{num_classes - 1}")
        if not _finite_score(value):
            raise ValueError(f"class thresholds: {key!r} has threshold {value!r}, not a number")
        if out[k] is not None:
            raise ValueError(f"class thresholds: class {k} is given twice")
        out[k] = float(value)
    return out


def count_detection_errors(
    coco_gt,
    coco_dt,
    thresholds: Union[float, Mapping[int, float]],
    *,
    iou_type: str = "bbox",
    tau: float = 0.5,
    max_dets: int = 100,
) -> dict:
    """True positives, false positives and misses of detections kept at score thresholds.

    Detections are matched to ground truth as oLRP matches them (COCO's greedy matching at IoU
    ``tau``, crowd matches ignored, ``max_dets`` per image and class). The matching of the
    detections at or above a threshold equals theirs in the matching of all detections (greedy by
    score), so one matching serves every threshold.

    Args:
        coco_gt (pycocotools.coco.COCO): ground truth (modified in place as ``COCOeval`` does).
        coco_dt (COCO or list[dict]): detections, COCO results format with the dataset's ids.
        thresholds: one score threshold for every class, or {dataset category id: threshold} for
            every category of ``coco_gt``; a detection is kept when its score is >= its class's.
        iou_type, tau, max_dets: as in :func:`~rs_detectron2.evaluation.olrp.olrp_from_coco`.

    Returns:
        dict with totals ``tp``, ``fp``, ``fn`` (misses) and ``per_class``:
        {category id: {"tp", "fp", "fn"}} for every category of ``coco_gt``.

    Raises:
        ValueError: a category of ``coco_gt`` without a threshold in the dict.
    """
    matched = match_detections(coco_gt, coco_dt, iou_type, tau=tau, max_dets=max_dets)
    if isinstance(thresholds, Mapping):
        missing = sorted(set(matched) - set(thresholds))
        if missing:
            raise ValueError(f"no threshold for categories {missing}")
    per_class = {}
    for cat_id, (scores, is_tp, _, num_gt) in matched.items():
        thr = thresholds[cat_id] if isinstance(thresholds, Mapping) else thresholds
        kept = scores >= thr
        tp = int(np.count_nonzero(kept & is_tp))
        per_class[int(cat_id)] = {
            "tp": tp,
            "fp": int(np.count_nonzero(kept & ~is_tp)),
            "fn": int(num_gt - tp),
        }
    totals = {key: sum(c[key] for c in per_class.values()) for key in ("tp", "fp", "fn")}
    return {**totals, "per_class": per_class}
