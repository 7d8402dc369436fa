"""Datasets for rs_detectron2: the synthetic long-tailed shapes dataset (COCO and LVIS formats),
user datasets given as COCO/LVIS json (``--dataset NAME:JSON:ROOT``), ground-truth sanitising and
the training-data builders used by the configs."""

from .build import (
    build_repeat_factor_train_loader,
    get_training_dataset_dicts,
    repeat_factor_sampler,
)
from .sanitize import SANITIZE_REASONS, annotation_problem, sanitize_dataset_dicts
from .shapes import (
    SHAPES_CLASSES,
    SHAPES_DATASET_NAMES,
    SHAPES_DEFAULTS,
    frequency_group,
    frequency_thresholds,
    generate_shapes,
    register_shapes,
    shapes_class_frequencies,
    shapes_root,
)
from .user_datasets import (
    UserDatasetError,
    parse_dataset_spec,
    register_user_dataset,
    register_user_datasets,
)

__all__ = [
    "SANITIZE_REASONS",
    "SHAPES_CLASSES",
    "SHAPES_DATASET_NAMES",
    "SHAPES_DEFAULTS",
    "UserDatasetError",
    "annotation_problem",
    "build_repeat_factor_train_loader",
    "frequency_group",
    "frequency_thresholds",
    "generate_shapes",
    "get_training_dataset_dicts",
    "parse_dataset_spec",
    "register_shapes",
    "register_user_dataset",
    "register_user_datasets",
    "repeat_factor_sampler",
    "sanitize_dataset_dicts",
    "shapes_class_frequencies",
    "shapes_root",
]
