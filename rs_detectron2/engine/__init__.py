from .checkpoint import (
    AtomicCheckpointer,
    ResumeMismatchError,
    existing_checkpoint,
    load_weights,
    move_run_aside,
)
from .clip import ClipGradNorm
from .defaults import (
    IMAGE_SAMPLE,
    CommandLineParser,
    default_argument_parser,
    default_writers,
    load_eval_weights,
    prepare_run,
    start_up_checks,
    wrap_ddp,
)
from .guard import FiniteLossGuard, NonFiniteLossError
from .model_info import (
    ModelInfoMismatch,
    adopt_model_info,
    evaluation_config,
    metadata_from_info,
    model_info_from_config,
    read_model_info,
)
from .predictor import LazyPredictor, WeightsMismatchError, load_lazy_config
from .resume import ReseedEveryPeriod, iteration_seed, start_train_loader_at
from .schedule import EpochSchedule, resolve_epoch_schedule

__all__ = [
    "IMAGE_SAMPLE",
    "AtomicCheckpointer",
    "CommandLineParser",
    "ResumeMismatchError",
    "ClipGradNorm",
    "EpochSchedule",
    "FiniteLossGuard",
    "LazyPredictor",
    "ModelInfoMismatch",
    "NonFiniteLossError",
    "ReseedEveryPeriod",
    "WeightsMismatchError",
    "adopt_model_info",
    "default_argument_parser",
    "default_writers",
    "evaluation_config",
    "existing_checkpoint",
    "iteration_seed",
    "load_eval_weights",
    "load_lazy_config",
    "load_weights",
    "metadata_from_info",
    "model_info_from_config",
    "move_run_aside",
    "prepare_run",
    "read_model_info",
    "resolve_epoch_schedule",
    "start_train_loader_at",
    "start_up_checks",
    "wrap_ddp",
]
