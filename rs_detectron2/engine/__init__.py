from .checkpoint import AtomicCheckpointer, existing_checkpoint, move_run_aside
from .clip import ClipGradNorm
from .guard import FiniteLossGuard, NonFiniteLossError
from .predictor import LazyPredictor, WeightsMismatchError, load_lazy_config
from .resume import ReseedEveryPeriod, iteration_seed, start_train_loader_at
from .schedule import EpochSchedule, resolve_epoch_schedule

__all__ = [
    "AtomicCheckpointer",
    "ClipGradNorm",
    "EpochSchedule",
    "FiniteLossGuard",
    "LazyPredictor",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "WeightsMismatchError",
    "existing_checkpoint",
    "iteration_seed",
    "load_lazy_config",
    "move_run_aside",
    "resolve_epoch_schedule",
    "start_train_loader_at",
]
