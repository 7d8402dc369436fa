from .checkpoint import AtomicCheckpointer, existing_checkpoint, move_run_aside
from .clip import ClipGradNorm
from .guard import FiniteLossGuard, NonFiniteLossError
from .resume import ReseedEveryPeriod, SkippingSampler, iteration_seed, start_train_loader_at

__all__ = [
    "AtomicCheckpointer",
    "ClipGradNorm",
    "FiniteLossGuard",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "SkippingSampler",
    "existing_checkpoint",
    "iteration_seed",
    "move_run_aside",
    "start_train_loader_at",
]
