"""Datasets for rs_detectron2: the synthetic long-tailed shapes dataset (COCO and LVIS formats),
user datasets given as COCO/LVIS json (``--dataset NAME:JSON:ROOT``), the dataset linter
(:mod:`.lint`) that ``python -m rs_detectron2.data.check`` runs, ground-truth sanitising and the
training-data builders used by the configs.

Importing this package registers the shapes datasets (``rs_shapes_*``), as importing
``detectron2.data`` registers Detectron2's builtin ones: names and metadata only, the images are
generated when a shapes dataset is first loaded (:mod:`.shapes.register`).
"""

from .build import (
    build_repeat_factor_train_loader,
    get_training_dataset_dicts,
    repeat_factor_sampler,
)
from .lint import (
    MASK_FORMAT_KEY,
    AnnotationReport,
    ConfigFacts,
    Finding,
    UserDatasetError,
    box_only_config,
    check_dataset,
    class_count_disagreement,
    class_count_key,
    class_count_keys,
    config_facts,
    dataset_names_from_config,
    exit_code,
    format_findings,
    model_trains_masks,
    required_mask_format,
)
from .samplers import REPEAT_ROUNDINGS, RepeatFactorSampler, SkippingSampler
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
from .transforms import (
    ClipCropTransform,
    Expand,
    ExpandTransform,
    MinIoURandomCrop,
    PhotometricDistortion,
    PhotometricTransform,
    SSDDatasetMapper,
    box_centres_inside,
    centres_inside_image,
    clip_polygon,
    ssd_augmentations,
)
from .user_datasets import (
    add_dataset_argument,
    parse_dataset_spec,
    register_user_dataset,
    register_user_datasets,
)

# Once per process, like Detectron2's builtin datasets; writes nothing (see the module docstring).
register_shapes()

__all__ = [
    "MASK_FORMAT_KEY",
    "SANITIZE_REASONS",
    "SHAPES_CLASSES",
    "SHAPES_DATASET_NAMES",
    "SHAPES_DEFAULTS",
    "REPEAT_ROUNDINGS",
    "RepeatFactorSampler",
    "SkippingSampler",
    "AnnotationReport",
    "model_trains_masks",
    "box_only_config",
    "class_count_disagreement",
    "class_count_key",
    "class_count_keys",
    "ClipCropTransform",
    "ConfigFacts",
    "Expand",
    "ExpandTransform",
    "Finding",
    "MinIoURandomCrop",
    "PhotometricDistortion",
    "PhotometricTransform",
    "SSDDatasetMapper",
    "UserDatasetError",
    "add_dataset_argument",
    "annotation_problem",
    "box_centres_inside",
    "build_repeat_factor_train_loader",
    "centres_inside_image",
    "check_dataset",
    "clip_polygon",
    "config_facts",
    "dataset_names_from_config",
    "exit_code",
    "format_findings",
    "frequency_group",
    "frequency_thresholds",
    "generate_shapes",
    "get_training_dataset_dicts",
    "parse_dataset_spec",
    "register_shapes",
    "register_user_dataset",
    "register_user_datasets",
    "repeat_factor_sampler",
    "required_mask_format",
    "sanitize_dataset_dicts",
    "shapes_class_frequencies",
    "shapes_root",
    "ssd_augmentations",
]
