from .checkpoint import AtomicCheckpointer, existing_checkpoint
from .guard import FiniteLossGuard, NonFiniteLossError
from .resume import (
    ReseedEveryPeriod,
    SkippingSampler,
    give_loader_own_generator,
    iteration_seed,
    skip_consumed_samples,
)

__all__ = [
    "AtomicCheckpointer",
    "FiniteLossGuard",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "SkippingSampler",
    "existing_checkpoint",
    "give_loader_own_generator",
    "iteration_seed",
    "skip_consumed_samples",
]
