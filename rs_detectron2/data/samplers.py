"""Samplers of the training loaders."""

import itertools

from torch.utils.data import Sampler

__all__ = ["SkippingSampler"]


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
