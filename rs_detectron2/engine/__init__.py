from .checkpoint import AtomicCheckpointer, existing_checkpoint, move_run_aside
from .clip import ClipGradNorm
from .guard import FiniteLossGuard, NonFiniteLossError
from .predictor import LazyPredictor, WeightsMismatchError, load_lazy_config
from .resume import ReseedEveryPeriod, iteration_seed, start_train_loader_at

__all__ = [
    "AtomicCheckpointer",
    "ClipGradNorm",
    "FiniteLossGuard",
    "LazyPredictor",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "WeightsMismatchError",
    "existing_checkpoint",
    "iteration_seed",
    "load_lazy_config",
    "move_run_aside",
    "start_train_loader_at",
]
