"""Learning-rate schedules counted in epochs, as the RS paper's recipes count them.

The authors train with mmdetection, whose "1x" is 12 epochs of the training set with the LR x0.1
after epochs 8 and 11 and a linear warmup over 500 iterations from 0.001 x LR. Detectron2 counts
iterations (its "1x" is 90k at 16 images). :class:`EpochSchedule` turns epochs into iterations for
a dataset size and a batch:

* COCO: the size is a constant of the config (``configs/common/data/coco.py``), so the leaf
  configs hold the resolved ``train.max_iter`` and ``lr_multiplier``.
* LVIS: an epoch is one pass over the *repeated* set (each image ``ceil(r)`` times, see
  :func:`rs_detectron2.data.repeat_factor_sampler`), whose size is known only once the dataset is
  loaded. Such a config sets ``train.epoch_schedule = L(EpochSchedule)(...)`` and
  :func:`resolve_epoch_schedule` sets ``train.max_iter`` and ``lr_multiplier`` at start, from the
  training loader's epoch length, and logs every number it used.
"""

import inspect
import logging
import math
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import DictConfig

from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.data import DatasetFromList, build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.solver import WarmupParamScheduler
from detectron2.utils.registry import locate

from ..data import repeat_factor_sampler

__all__ = ["EpochSchedule", "resolve_epoch_schedule", "train_epoch_size"]

logger = logging.getLogger("rs_detectron2")


class EpochSchedule:
    """A step schedule in epochs: LR x0.1 after each of ``step_epochs``, ``epochs`` in all, and a
    linear warmup over the first ``warmup_iters`` iterations from ``warmup_factor`` x LR.

    Epoch ``e`` ends at iteration ``ceil(e * images_per_epoch / batch_size)`` (the first iteration
    by which ``e`` epochs of images were drawn): at COCO's 117,266 images and 16 per batch, 12
    epochs are 87,950 iterations with the steps at 58,633 and 80,621.

    A plain class, not a dataclass: Detectron2's ``LazyCall`` stores a dataclass target as a
    string, which ``LazyConfig.to_py`` then cannot print.
    """

    def __init__(
        self,
        epochs: int = 12,
        step_epochs: Sequence[int] = (8, 11),
        warmup_iters: int = 500,
        warmup_factor: float = 0.001,
    ):
        steps = tuple(step_epochs)
        if epochs <= 0 or list(steps) != sorted(steps) or any(not 0 < e < epochs for e in steps):
            raise ValueError(
                "an epoch schedule needs epochs > 0 and increasing step epochs inside (0, epochs);"
                f" got epochs={epochs}, step_epochs={list(steps)}"
            )
        self.epochs = epochs
        self.step_epochs = steps
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor

    def _key(self):
        return (self.epochs, self.step_epochs, self.warmup_iters, self.warmup_factor)

    def __eq__(self, other):
        return isinstance(other, EpochSchedule) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (
            f"EpochSchedule(epochs={self.epochs}, step_epochs={self.step_epochs}, "
            f"warmup_iters={self.warmup_iters}, warmup_factor={self.warmup_factor})"
        )

    @staticmethod
    def end_of_epoch(epochs: float, images_per_epoch: float, batch_size: int) -> int:
        """The iteration at which ``epochs`` epochs of ``images_per_epoch`` images end."""
        return math.ceil(Fraction(epochs) * Fraction(images_per_epoch) / batch_size)

    def max_iter(self, images_per_epoch: float, batch_size: int) -> int:
        """``train.max_iter``: the end of the last epoch."""
        return self.end_of_epoch(self.epochs, images_per_epoch, batch_size)

    def milestones(self, images_per_epoch: float, batch_size: int) -> List[int]:
        """The iterations at which the LR drops, then ``max_iter`` (Detectron2's layout of
        ``MultiStepParamScheduler.milestones``)."""
        ends = [self.end_of_epoch(e, images_per_epoch, batch_size) for e in self.step_epochs]
        return ends + [self.max_iter(images_per_epoch, batch_size)]

    def lr_multiplier(self, images_per_epoch: float, batch_size: int):
        """The ``lr_multiplier`` config node (a LazyCall of Detectron2's ``WarmupParamScheduler``)
        of this schedule for ``images_per_epoch`` images at ``batch_size`` per iteration."""
        total = self.max_iter(images_per_epoch, batch_size)
        return L(WarmupParamScheduler)(
            scheduler=L(MultiStepParamScheduler)(
                values=[0.1**k for k in range(len(self.step_epochs) + 1)],
                milestones=self.milestones(images_per_epoch, batch_size),
            ),
            # a run shorter than the warmup warms up throughout
            warmup_length=min(self.warmup_iters / total, 1.0),
            warmup_method="linear",
            warmup_factor=self.warmup_factor,
        )


def _target(node):
    target = node._target_
    return locate(target) if isinstance(target, str) else target


def train_epoch_size(loader_cfg) -> Tuple[int, float]:
    """The dataset size and the epoch length of the training loader that ``loader_cfg`` describes.

    The dataset node is instantiated here, once, and left in ``loader_cfg.dataset`` as a
    Detectron2 ``DatasetFromList`` that the loader then uses, so the annotation file is parsed once.

    Args:
        loader_cfg: the LazyConfig node of the training loader (``cfg.dataloader.train``). Either a
            builder with ``repeat_thresh`` and ``rounding`` arguments (such as
            :func:`rs_detectron2.data.build_repeat_factor_train_loader`: an epoch is the repeated
            set) or Detectron2's ``build_detection_train_loader`` with no sampler or a
            ``TrainingSampler`` (an epoch is the dataset).

    Returns:
        ``(images, images_per_epoch)``: the dataset's images and the indices of one epoch
        (a float: the expected length under stochastic rounding).

    Raises:
        ValueError: for a loader whose epoch length cannot be told from its config.
    """
    target = _target(loader_cfg)
    params = inspect.signature(target).parameters
    repeats = "repeat_thresh" in params and "rounding" in params
    sampler = loader_cfg.get("sampler") if target is build_detection_train_loader else None
    if not repeats and (
        target is not build_detection_train_loader
        or (sampler is not None and _target(sampler) is not TrainingSampler)
    ):
        name = getattr(target, "__qualname__", str(target))
        raise ValueError(
            f"cannot tell the epoch length of the training loader {name}: an epoch schedule needs "
            "a repeat-factor loader (build_repeat_factor_train_loader) or "
            "build_detection_train_loader with a TrainingSampler. Set train.max_iter and "
            "lr_multiplier instead (train.epoch_schedule=null)."
        )
    dataset = loader_cfg.dataset
    if isinstance(dataset, DictConfig):
        dataset = instantiate(dataset)
    if isinstance(dataset, list):
        # an object, not a list, so that the config does not turn every dict into a config node
        dataset = DatasetFromList(dataset, copy=False, serialize=not repeats)
    loader_cfg.dataset = dataset
    if not repeats:
        return len(dataset), float(len(dataset))
    dicts = [dataset[i] for i in range(len(dataset))]
    sampler = repeat_factor_sampler(
        dicts,
        loader_cfg.get("repeat_thresh", params["repeat_thresh"].default),
        sqrt=loader_cfg.get("repeat_sqrt", params["repeat_sqrt"].default)
        if "repeat_sqrt" in params
        else True,
        rounding=loader_cfg.get("rounding", params["rounding"].default),
        seed=0,  # only its epoch length is read: no seed shared between processes is needed
    )
    return len(dicts), sampler.epoch_size


def resolve_epoch_schedule(cfg) -> Optional[Dict[str, float]]:
    """Set ``cfg.train.max_iter`` and ``cfg.lr_multiplier`` from ``cfg.train.epoch_schedule`` (an
    :class:`EpochSchedule` or its LazyCall) and the training loader's epoch length, and log both.

    Call it once per process before the LR scheduler and the loader are built (train_net.py does);
    configs without ``train.epoch_schedule`` (or with it None) are left as they are.

    Args:
        cfg: the LazyConfig with overrides applied; changed in place (the training dataset node is
            replaced by the loaded dataset, see :func:`train_epoch_size`).

    Returns:
        None when there is nothing to resolve, else a dict with ``images`` (dataset images),
        ``images_per_epoch`` (the repeated set's size for repeat-factor loaders),
        ``iters_per_epoch`` (float), ``max_iter`` and ``milestones``.
    """
    node = cfg.train.get("epoch_schedule")
    if node is None:
        return None
    schedule = instantiate(node) if isinstance(node, DictConfig) else node
    loader_cfg = cfg.dataloader.train
    batch = int(loader_cfg.total_batch_size)
    images, per_epoch = train_epoch_size(loader_cfg)
    cfg.train.max_iter = schedule.max_iter(per_epoch, batch)
    cfg.lr_multiplier = schedule.lr_multiplier(per_epoch, batch)
    milestones = schedule.milestones(per_epoch, batch)
    steps = ", ".join(f"{m} (epoch {e})" for m, e in zip(milestones, schedule.step_epochs))
    logger.info(
        f"Epoch schedule: {images} dataset images, {per_epoch:.1f} images per epoch, "
        f"{per_epoch / batch:.2f} iterations per epoch at {batch} images per batch; "
        f"{schedule.epochs} epochs = train.max_iter {cfg.train.max_iter}, LR x0.1 at {steps}, "
        f"warmup {schedule.warmup_iters} iterations."
    )
    return dict(
        images=images,
        images_per_epoch=per_epoch,
        iters_per_epoch=per_epoch / batch,
        max_iter=cfg.train.max_iter,
        milestones=milestones,
    )
