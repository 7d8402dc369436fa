"""Samplers of the training loaders."""

import itertools

import torch
from torch.utils.data import Sampler

from detectron2.data.samplers import RepeatFactorTrainingSampler

__all__ = ["REPEAT_ROUNDINGS", "RepeatFactorSampler", "SkippingSampler"]

REPEAT_ROUNDINGS = ("ceil", "stochastic")
"""How a fractional repeat factor ``r`` becomes a whole number of repeats per epoch: ``"ceil"``
(``ceil(r)`` every epoch, mmdetection's ``ClassBalancedDataset``, with which the RS paper's LVIS
models were trained) or ``"stochastic"`` (``floor(r)``, plus one with probability ``r - floor(r)``:
Detectron2's ``RepeatFactorTrainingSampler``)."""


class SkippingSampler(Sampler):
    """Yields the indices of ``sampler`` after dropping its first ``num_skip``: the sampler of a
    resumed run, which continues the data stream where the checkpoint left it."""

    def __init__(self, sampler: Sampler, num_skip: int):
        if num_skip < 0:
            raise ValueError(f"num_skip must be >= 0, got {num_skip}")
        self.sampler = sampler
        self.num_skip = int(num_skip)

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.num_skip, None)


class RepeatFactorSampler(RepeatFactorTrainingSampler):
    """Detectron2's repeat-factor sampler with a choice of rounding (:data:`REPEAT_ROUNDINGS`).

    Either way the stream is infinite, each epoch is shuffled with a generator seeded once from
    ``seed`` (shared by all processes) and process ``rank`` takes every ``world_size``-th index of
    it, as in Detectron2. With ``"ceil"`` every epoch holds the same multiset of images: image ``i``
    ``ceil(repeat_factors[i])`` times.

    Args:
        repeat_factors: float tensor (N,), the repeat factor of each dataset index (>= 1 for LVIS).
        rounding: ``"ceil"`` or ``"stochastic"``.
        shuffle, seed: as in ``RepeatFactorTrainingSampler`` (``seed=None`` draws one seed shared
            by all processes).
    """

    def __init__(self, repeat_factors, *, rounding: str = "ceil", shuffle: bool = True, seed=None):
        if rounding not in REPEAT_ROUNDINGS:
            raise ValueError(f"rounding must be one of {REPEAT_ROUNDINGS}, got {rounding!r}")
        super().__init__(repeat_factors, shuffle=shuffle, seed=seed)
        self.rounding = rounding
        self.repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float32)
        self._repeats = torch.ceil(self.repeat_factors).long()

    @property
    def epoch_size(self) -> float:
        """Indices in one epoch (over all processes): ``sum(ceil(r))`` with ``"ceil"``, the
        expected ``sum(r)`` with ``"stochastic"``."""
        if self.rounding == "ceil":
            return float(self._repeats.sum())
        return float(self.repeat_factors.double().sum())

    def _get_epoch_indices(self, generator):
        """Dataset indices of one epoch, each repeated as ``rounding`` says (unshuffled)."""
        if self.rounding == "stochastic":
            return super()._get_epoch_indices(generator)
        return torch.repeat_interleave(torch.arange(len(self._repeats)), self._repeats)
