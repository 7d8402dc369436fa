"""Resuming a run where it stopped: the data stream and the random state, not only the weights.

Detectron2's ``--resume`` restores the model, optimiser, scheduler and iteration, but its training
data loader starts its sampler from the beginning again, and the random state (augmentations,
anything else drawn from torch / numpy / python RNGs) is whatever the process seeded at start-up.
Two small pieces close that gap:

* :func:`skip_consumed_samples` advances the loader's sampler past the samples the earlier run
  already consumed (``start_iter`` x images per process), without loading any image.
* :class:`ReseedEveryPeriod` reseeds every RNG at each checkpoint boundary from
  ``(seed, rank, iteration)``. A run resumed from the checkpoint at iteration ``k`` therefore draws
  exactly what the uninterrupted run drew from ``k`` on.
* :func:`give_loader_own_generator` stops the loader from drawing its base seed from the global
  torch RNG when its iterator is created (at the first step of a run, so at a different point of the
  stream in a resumed run; one draw is enough to reorder the RoIs Detectron2 samples).

With a fixed ``train.seed``, ``num_workers=0`` and images of one aspect-ratio group, the iterations
after a resume reproduce the uninterrupted run's losses exactly. With data-loading workers the image
order is resumed exactly but the workers' augmentation draws are not; with several aspect-ratio
groups, images waiting in a partly filled group at the checkpoint are not replayed.
"""

import itertools
import logging
import zlib

import torch
from torch.utils.data import DataLoader, Sampler

from detectron2.data.common import ToIterableDataset
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

__all__ = [
    "ReseedEveryPeriod",
    "SkippingSampler",
    "give_loader_own_generator",
    "iteration_seed",
    "skip_consumed_samples",
]

logger = logging.getLogger("rs_detectron2")


class SkippingSampler(Sampler):
    """Yields the indices of ``sampler`` after dropping its first ``num_skip``."""

    def __init__(self, sampler: Sampler, num_skip: int):
        if num_skip < 0:
            raise ValueError(f"num_skip must be >= 0, got {num_skip}")
        self.sampler = sampler
        self.num_skip = int(num_skip)

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.num_skip, None)


def _loader_parts(loader):
    """The objects of a Detectron2 train loader's ``.dataset`` chain, outermost first."""
    parts, node = [], loader
    while node is not None and len(parts) < 8:
        parts.append(node)
        node = getattr(node, "dataset", None)
    return parts


def _find_sampled_dataset(loader):
    """The ToIterableDataset that holds the sampler inside a Detectron2 train loader, or None."""
    found = [p for p in _loader_parts(loader) if isinstance(p, ToIterableDataset)]
    return found[0] if found else None


def give_loader_own_generator(loader, seed: int) -> int:
    """Give every torch DataLoader inside ``loader`` its own generator seeded with ``seed``, so that
    creating its iterator draws nothing from the global torch RNG. Returns how many were changed."""
    loaders = [p for p in _loader_parts(loader) if isinstance(p, DataLoader)]
    for part in loaders:
        if part.generator is None:
            part.generator = torch.Generator().manual_seed(seed)
    return len(loaders)


def skip_consumed_samples(loader, num_samples: int):
    """Make a Detectron2 training loader start after ``num_samples`` samples of its sampler.

    Args:
        loader: what ``build_detection_train_loader`` returns (before iteration starts).
        num_samples: samples this process has consumed already, i.e. ``start_iter`` times the
            images per process per iteration.
    Returns:
        ``loader``, changed in place.
    Raises:
        ValueError: if the loader has no sampler to advance (e.g. an IterableDataset pipeline).
    """
    if num_samples == 0:
        return loader
    sampled = _find_sampled_dataset(loader)
    if sampled is None:
        raise ValueError(
            "cannot resume the data stream: the training loader has no sampler "
            "(expected one built by detectron2.data.build_detection_train_loader)"
        )
    sampled.sampler = SkippingSampler(sampled.sampler, num_samples)
    logger.info("Resuming the data stream: skipped the first %d samples of the sampler", num_samples)
    return loader


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
