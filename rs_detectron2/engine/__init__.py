from .checkpoint import AtomicCheckpointer, existing_checkpoint, move_run_aside
from .clip import ClipGradNorm
from .guard import FiniteLossGuard, NonFiniteLossError
from .resume import ReseedEveryPeriod, iteration_seed, start_train_loader_at

__all__ = [
    "AtomicCheckpointer",
    "ClipGradNorm",
    "FiniteLossGuard",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "existing_checkpoint",
    "iteration_seed",
    "move_run_aside",
    "start_train_loader_at",
]
