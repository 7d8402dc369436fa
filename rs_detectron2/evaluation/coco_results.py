"""The COCO-format results every COCO-style evaluator of this package starts from.

Detectron2's ``COCOEvaluator`` and ``LVISEvaluator`` begin ``_eval_predictions`` the same way:
flatten the gathered predictions into COCO result dicts, map the category ids back to the
dataset's, save them, and stop when the dataset has no annotations. :class:`COCOResultsMixin` is
that step once, for the evaluators that replace the metric after it (:class:`FastCOCOEvaluator`,
:class:`FastLVISEvaluator`, :class:`OLRPEvaluator`).
"""

import itertools
import json
import os

from detectron2.utils.file_io import PathManager

__all__ = ["COCOResultsMixin", "coco_results_from_predictions"]


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


class COCOResultsMixin:
    """
    Mixed into a subclass of Detectron2's ``COCOEvaluator`` or ``LVISEvaluator`` (put it first
    among the bases) whose ``_eval_predictions`` computes its own metric from COCO-format results.
    It reads the state both Detectron2 evaluators set up: ``_metadata``, ``_output_dir``,
    ``_logger`` and ``_do_evaluation``.
    """

    def _coco_results(self, predictions, results_file=None, *, lvis=False):
        """
        The results to evaluate: ``predictions`` as COCO result dicts with the dataset's category
        ids, saved as ``<output_dir>/<results_file>`` when both are set.

        Args:
            predictions (list[dict]): as gathered by the evaluator's ``process``.
            results_file (str or None): file name of the saved results (Detectron2 uses
                ``coco_instances_results.json`` / ``lvis_instances_results.json``); None saves
                nothing.
            lvis (bool): see :func:`coco_results_from_predictions`.

        Returns:
            list[dict] or None: the results, or None (after logging why) when the dataset has no
            annotations to evaluate them against.
        """
        results = coco_results_from_predictions(predictions, self._metadata, lvis=lvis)
        if self._output_dir and results_file:
            path = os.path.join(self._output_dir, results_file)
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(results))
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return None
        return results
