"""Datasets for rs_detectron2: the synthetic long-tailed shapes dataset (COCO and LVIS formats)."""

from .shapes import (
    SHAPES_CLASSES,
    SHAPES_DATASET_NAMES,
    frequency_group,
    frequency_thresholds,
    generate_shapes,
    register_shapes,
    shapes_class_frequencies,
    shapes_root,
)

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_DATASET_NAMES",
    "frequency_group",
    "frequency_thresholds",
    "generate_shapes",
    "register_shapes",
    "shapes_class_frequencies",
    "shapes_root",
]
