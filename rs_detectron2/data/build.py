"""Training data for the shipped configs: sanitised dataset dicts and a repeat-factor loader that
loads its dataset once.

* :func:`get_training_dataset_dicts` is Detectron2's ``get_detection_dataset_dicts`` followed by
  :func:`~rs_detectron2.data.sanitize.sanitize_dataset_dicts` and then (as Detectron2 does) the
  removal of images without a usable annotation. Every training dataset of ``configs/`` goes
  through it.
* :func:`build_repeat_factor_train_loader` computes LVIS repeat factors from the dataset dicts it is
  given and builds the loader from that same list. Detectron2's LazyConfig recipe
  (``dataset_dicts="${dataloader.train.dataset}"``) instantiates the dataset node twice, i.e. parses
  the annotation file twice (about a minute and twice the memory on LVIS v1). Repeat factors are
  rounded up every epoch by default, as the RS paper's LVIS runs did (mmdetection's
  ``ClassBalancedDataset``), or stochastically as in Detectron2 (``rounding="stochastic"``).
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Union

import torch

from detectron2.data import (
    MetadataCatalog,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import (
    filter_images_with_few_keypoints,
    filter_images_with_only_crowd_annotations,
    print_instances_class_histogram,
)
from detectron2.data.detection_utils import check_metadata_consistency
from detectron2.data.samplers import RepeatFactorTrainingSampler

from .samplers import RepeatFactorSampler, SkippingSampler
from .sanitize import sanitize_dataset_dicts

__all__ = [
    "get_training_dataset_dicts",
    "repeat_factor_sampler",
    "build_repeat_factor_train_loader",
]

logger = logging.getLogger(__name__)


def _num_classes(names: Sequence[str]) -> Optional[int]:
    classes = MetadataCatalog.get(names[0]).get("thing_classes")
    return len(classes) if classes is not None else None


def get_training_dataset_dicts(
    names: Union[str, Sequence[str]],
    filter_empty: bool = True,
    min_keypoints: int = 0,
    proposal_files: Optional[Sequence[str]] = None,
    check_consistency: bool = True,
    sanitize: bool = True,
    min_box_size: float = 0.0,
) -> List[dict]:
    """Dataset dicts for training, with degenerate ground truth removed.

    Args:
        names, filter_empty, min_keypoints, proposal_files, check_consistency: as in Detectron2's
            ``get_detection_dataset_dicts`` (one name or a list; the datasets are concatenated).
        sanitize: drop degenerate annotations first (see :mod:`rs_detectron2.data.sanitize`), using
            the number of ``thing_classes`` in the metadata of ``names[0]`` for the category check.
        min_box_size: boxes with a side ``<=`` this many pixels count as zero area.

    Returns:
        list[dict]: the dicts; with ``filter_empty`` the images left without a non-crowd annotation
        are removed afterwards (Detectron2 logs that count). A dataset that is not a list of dicts
        (a torch Dataset) is returned as Detectron2 returns it, unsanitised, with a warning.

    Raises:
        ValueError: when no image is left.
    """
    names = [names] if isinstance(names, str) else list(names)
    # Detectron2's consistency check prints a class histogram that asserts on bad category ids:
    # it runs below, on the sanitised dicts.
    dicts = get_detection_dataset_dicts(
        names,
        filter_empty=False,
        min_keypoints=0,
        proposal_files=proposal_files,
        check_consistency=False,
    )
    if not isinstance(dicts, list):
        logger.warning(f"{names} is not a list of dataset dicts: not sanitised.")
        return dicts
    has_instances = len(dicts) > 0 and "annotations" in dicts[0]
    if sanitize and has_instances:
        dicts, _ = sanitize_dataset_dicts(
            dicts, _num_classes(names), min_box_size=min_box_size, dataset_name=",".join(names)
        )
    if filter_empty and has_instances:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    if min_keypoints > 0 and has_instances:
        dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
    if not dicts:
        raise ValueError(f"No training image with a usable annotation in {names}.")
    if check_consistency and has_instances:
        classes = MetadataCatalog.get(names[0]).get("thing_classes")
        if classes is not None:
            check_metadata_consistency("thing_classes", names)
            if sanitize:  # without it, bad ids would trip the histogram's assertion
                print_instances_class_histogram(dicts, classes)
    return dicts


def repeat_factor_sampler(
    dataset_dicts: Sequence[dict],
    repeat_thresh: float,
    *,
    sqrt: bool = True,
    rounding: str = "ceil",
    seed: Optional[int] = None,
    shuffle: bool = True,
) -> RepeatFactorSampler:
    """LVIS repeat-factor sampler for ``dataset_dicts``.

    Image repeat factors are ``r(I) = max_{c in I} r(c)`` with ``r(c) = max(1, sqrt(t / f(c)))``,
    ``f(c)`` the fraction of the images of ``dataset_dicts`` that contain class ``c`` and ``t`` =
    ``repeat_thresh`` (Detectron2's ``repeat_factors_from_category_frequency``; ``sqrt=False`` drops
    the square root). Each epoch repeats image ``I`` ``ceil(r(I))`` times (``rounding="ceil"``, the
    authors' mmdetection ``ClassBalancedDataset``) or ``floor(r(I))`` times plus once more with
    probability ``frac(r(I))`` (``"stochastic"``, Detectron2's rounding).

    Args:
        dataset_dicts: the training dicts the loader will index (same order).
        repeat_thresh: the frequency threshold ``t`` (LVIS: 0.001).
        sqrt, seed, shuffle: as in ``RepeatFactorTrainingSampler``; ``seed=None`` draws one seed
            shared by all workers.
        rounding: ``"ceil"`` or ``"stochastic"``.

    Returns:
        RepeatFactorSampler: an infinite stream of indices into ``dataset_dicts``; its
        ``epoch_size`` is the length of one epoch of the repeated set.
    """
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dataset_dicts, repeat_thresh, sqrt=sqrt
    )
    sampler = RepeatFactorSampler(factors, rounding=rounding, seed=seed, shuffle=shuffle)
    logger.info(
        f"Repeat factors (threshold {repeat_thresh:g}): {int((factors > 1).sum())} of "
        f"{len(factors)} images repeated; an epoch of the repeated set ({rounding} rounding) is "
        f"{sampler.epoch_size:.1f} images."
    )
    return sampler


def build_repeat_factor_train_loader(
    dataset: Union[Sequence[dict], torch.utils.data.Dataset],
    *,
    mapper,
    total_batch_size: int,
    repeat_thresh: float = 0.001,
    repeat_sqrt: bool = True,
    rounding: str = "ceil",
    seed: Optional[int] = None,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn=None,
    sampler_start: int = 0,
    loader_seed: Optional[int] = None,
) -> torch.utils.data.DataLoader:
    """Detectron2's ``build_detection_train_loader`` with a repeat-factor sampler built from the
    same, already loaded, dataset dicts.

    In a LazyConfig, ``dataset=L(get_training_dataset_dicts)(names=...)`` is instantiated once and
    the list is used both for the repeat factors and as the loader's dataset.

    Args:
        dataset: list of dataset dicts (e.g. from :func:`get_training_dataset_dicts`), or a
            map-style dataset whose items are those dicts (Detectron2's ``DatasetFromList``, as
            :func:`rs_detectron2.engine.schedule.resolve_epoch_schedule` leaves a loaded list in the
            config).
        mapper, total_batch_size, aspect_ratio_grouping, num_workers, collate_fn: as in
            ``build_detection_train_loader``.
        repeat_thresh, repeat_sqrt, rounding, seed: see :func:`repeat_factor_sampler`
            (``repeat_sqrt`` is its ``sqrt``).
        sampler_start: skip the first ``sampler_start`` indices of the sampler (a resumed run
            continues the data stream; see :func:`rs_detectron2.engine.start_train_loader_at`).
        loader_seed: seed of the torch DataLoader's own generator (Detectron2's ``seed``
            argument of ``build_detection_train_loader``); None: drawn from the global RNG.

    Returns:
        torch DataLoader yielding lists of mapped dicts (``total_batch_size / world_size`` each),
        drawn in the order of a :func:`repeat_factor_sampler` over ``dataset``.
    """
    if isinstance(dataset, torch.utils.data.Dataset) and not isinstance(dataset, list):
        dataset = [dataset[i] for i in range(len(dataset))]
    if not isinstance(dataset, list):
        raise TypeError(
            "build_repeat_factor_train_loader needs a list of dataset dicts, got "
            f"{type(dataset).__name__}"
        )
    sampler = repeat_factor_sampler(
        dataset, repeat_thresh, sqrt=repeat_sqrt, rounding=rounding, seed=seed
    )
    logger.info(
        f"Repeat-factor loader: {len(dataset)} images, {sampler.epoch_size:.0f} per epoch of the "
        f"repeated set, {sampler.epoch_size / total_batch_size:.2f} iterations per epoch "
        f"at {total_batch_size} images per batch."
    )
    if sampler_start:
        sampler = SkippingSampler(sampler, sampler_start)
    return build_detection_train_loader(
        dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
        collate_fn=collate_fn,
        seed=loader_seed,
    )
