"""Pick the evaluator from the dataset's metadata (``evaluator_type``) and one fast/stock switch."""

import logging
from typing import Optional, Sequence

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from .fast_coco import FastCOCOEvaluator, FastLVISEvaluator
from .lvis_compat import LVISAPIEvaluator

__all__ = ["build_evaluator"]

logger = logging.getLogger(__name__)

EVALUATOR_TYPES = ("coco", "lvis")


def build_evaluator(
    dataset_name: str,
    *,
    fast: bool = True,
    tasks: Optional[Sequence[str]] = None,
    distributed: bool = True,
    output_dir: Optional[str] = None,
    max_dets_per_image: Optional[int] = None,
):
    """COCO or LVIS evaluator for a registered dataset, by its metadata ``evaluator_type``.

    Args:
        dataset_name: a registered dataset whose metadata has ``evaluator_type`` ``"coco"``
            (Detectron2's COCO datasets, ``--dataset`` COCO-format files, ``rs_shapes_*``) or
            ``"lvis"`` (``lvis_v1_*``, ``--dataset`` LVIS-format files, ``rs_shapes_lvis_*``).
        fast: True: :class:`FastCOCOEvaluator` / :class:`FastLVISEvaluator` (faster-coco-eval,
            same numbers); False: the reference implementations, Detectron2's ``COCOEvaluator``
            with the official pycocotools COCOeval (``use_fast_impl=False``: not Detectron2's own
            compiled COCOeval) / :class:`LVISAPIEvaluator` (Detectron2's ``LVISEvaluator``,
            lvis-api, on numpy >= 1.24 too).
        tasks, distributed, output_dir: as in Detectron2's evaluators.
        max_dets_per_image: detections kept per image; ``None`` is the dataset's convention
            (COCO 100 per image, LVIS 300 per image over all classes).

    Returns:
        DatasetEvaluator: the evaluator.

    Raises:
        ValueError: when ``dataset_name`` is not a single name or its ``evaluator_type`` is
        missing or not one of ``coco``, ``lvis``.
    """
    if not isinstance(dataset_name, str):
        raise ValueError(
            f"build_evaluator evaluates one dataset; got {dataset_name!r}. Set "
            "dataloader.test.dataset.names to a single name."
        )
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type not in EVALUATOR_TYPES:
        raise ValueError(
            f"Dataset {dataset_name!r} has evaluator_type={evaluator_type!r} in its metadata; "
            f"build_evaluator supports {EVALUATOR_TYPES} (is the dataset registered? --dataset "
            "NAME:JSON:ROOT registers COCO/LVIS files)."
        )
    kwargs = dict(
        tasks=tasks,
        distributed=distributed,
        output_dir=output_dir,
        max_dets_per_image=max_dets_per_image,
    )
    if evaluator_type == "coco":
        cls = FastCOCOEvaluator if fast else COCOEvaluator
        if not fast:
            kwargs["use_fast_impl"] = False
    else:
        cls = FastLVISEvaluator if fast else LVISAPIEvaluator
    logger.info(f"Evaluating {dataset_name} with {cls.__name__}")
    return cls(dataset_name, **kwargs)
