"""Resuming a run where it stopped: the data stream and the random state, not only the weights.

Detectron2's ``--resume`` restores the model, optimiser, scheduler and iteration, but its training
data loader starts its sampler from the beginning again, and the random state (augmentations,
anything else drawn from torch / numpy / python RNGs) is whatever the process seeded at start-up.
Three pieces close that gap:

* :func:`start_train_loader_at` sets, in the config node of the training loader and before it is
  instantiated, the sample its sampler starts from (``start_iter`` x images per process) and a seed
  for the loader's own generator. Without that generator, creating the loader's iterator (at the
  first step of a run, so at a different point of the stream in a resumed run) draws from the global
  torch RNG, and one draw is enough to reorder the RoIs Detectron2 samples.
* :class:`rs_detectron2.data.SkippingSampler` is the sampler that starts late.
* :class:`ReseedEveryPeriod` reseeds every RNG at each checkpoint boundary from
  ``(seed, rank, iteration)``. A run resumed from the checkpoint at iteration ``k`` therefore draws
  exactly what the uninterrupted run drew from ``k`` on.

With a fixed ``train.seed``, ``num_workers=0`` and images of one aspect-ratio group, the iterations
after a resume reproduce the uninterrupted run's losses exactly. With data-loading workers the image
order is resumed exactly but the workers' augmentation draws are not; with several aspect-ratio
groups, images waiting in a partly filled group at the checkpoint are not replayed.
"""

import inspect
import logging
import zlib
from typing import Optional

from detectron2.config import instantiate
from detectron2.data import DatasetFromList, build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.registry import locate

from ..data import SkippingSampler

__all__ = [
    "ReseedEveryPeriod",
    "iteration_seed",
    "start_train_loader_at",
]

logger = logging.getLogger("rs_detectron2")


def start_train_loader_at(loader_cfg, num_samples: int, loader_seed: Optional[int] = None) -> None:
    """Make the training loader that ``loader_cfg`` describes start after ``num_samples`` samples
    of its sampler, and give its torch DataLoader its own generator seeded with ``loader_seed``.
    Changes the config node in place; call it before ``instantiate(loader_cfg)``.

    Two kinds of builders are understood:

    * Detectron2's ``build_detection_train_loader``: the ``dataset`` node is instantiated here
      (once; the loader then uses that object) so that ``sampler`` becomes a
      :class:`SkippingSampler` around the config's sampler, or around the
      ``TrainingSampler(len(dataset))`` Detectron2 would build; ``loader_seed`` goes to its
      ``seed`` argument (the DataLoader's generator).
    * builders with ``sampler_start`` (and ``loader_seed``) arguments, such as
      ``rs_detectron2.data.build_repeat_factor_train_loader``: those arguments are set.

    Args:
        loader_cfg: the LazyConfig node of the training loader (``cfg.dataloader.train``).
        num_samples: samples this process consumed already: ``start_iter`` times the images per
            process per iteration. 0 leaves the sampler as it is.
        loader_seed: seed of the DataLoader's own generator; ``None`` leaves it as configured.

    Raises:
        ValueError: ``num_samples > 0`` and the builder offers no way to start the sampler late.
    """
    target = loader_cfg._target_
    target = locate(target) if isinstance(target, str) else target
    params = inspect.signature(target).parameters
    name = getattr(target, "__qualname__", str(target))
    if target is build_detection_train_loader:
        if num_samples > 0:
            dataset = instantiate(loader_cfg.dataset)
            if isinstance(dataset, list):
                dataset = DatasetFromList(dataset, copy=False)
            sampler = instantiate(loader_cfg.get("sampler"))
            if sampler is None:
                sampler = TrainingSampler(len(dataset))
            loader_cfg.dataset = dataset
            loader_cfg.sampler = SkippingSampler(sampler, num_samples)
        if loader_seed is not None:
            loader_cfg.seed = loader_seed
    elif "sampler_start" in params:
        if num_samples > 0:
            loader_cfg.sampler_start = num_samples
        if loader_seed is not None and "loader_seed" in params:
            loader_cfg.loader_seed = loader_seed
    elif num_samples > 0:
        raise ValueError(
            f"cannot resume the data stream: the training loader {name} takes no `sampler_start` "
            "argument (build_detection_train_loader and builders with `sampler_start` can resume)"
        )
    if num_samples > 0:
        logger.info(f"Resuming the data stream: the sampler starts after {num_samples} samples")


def iteration_seed(seed: int, rank: int, iteration: int) -> int:
    """A 31-bit seed that depends only on (seed, process rank, iteration)."""
    return zlib.crc32(f"{seed}:{rank}:{iteration}".encode()) & 0x7FFFFFFF


class ReseedEveryPeriod(HookBase):
    """Reseeds torch, numpy and python RNGs before every iteration that is a multiple of
    ``period`` (the checkpoint period), from :func:`iteration_seed`. Does nothing when
    ``seed < 0`` (no reproducibility asked for)."""

    def __init__(self, seed: int, period: int):
        if period <= 0:
            raise ValueError(f"period must be > 0, got {period}")
        self.seed = int(seed)
        self.period = int(period)

    def before_step(self):
        it = self.trainer.iter
        if self.seed >= 0 and it % self.period == 0:
            seed_all_rng(iteration_seed(self.seed, comm.get_rank(), it))
