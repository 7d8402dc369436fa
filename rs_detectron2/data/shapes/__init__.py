"""A small, deterministic, long-tailed instance-segmentation dataset of rendered shapes.

The dataset ("rs_shapes") is the workhorse of the demo and the tests: tiny detectors are trained on
it on CPU for a few hundred iterations, so objects are large, flat-coloured polygons with one
distinct form and colour per class over a light, smoothly shaded background.

* :mod:`.spec`: the classes, :data:`SHAPES_DEFAULTS`, the folder and the LVIS frequency rule;
* :mod:`.geometry`: outlines, clipping, area and rasterisation;
* :mod:`.render`: which classes go into which image (the long tail) and painting them;
* :mod:`.write`: :func:`generate_shapes`, the files it writes and their layout;
* :mod:`.register`: :func:`register_shapes`, which writes nothing (the data is generated when a
  shapes dataset is first loaded).

Long tail and frequency groups. Each class has a target fraction of training images
(``SHAPE_CLASS_SPECS``); images are assigned to classes rarest-first, so per-class *image* counts
are exactly the targets unless an object cannot be placed (practically never). The LVIS groups use
LVIS's own rule (r: 1-10 training images, c: 11-100, f: > 100), applied verbatim at the default
size of 240 training images and scaled linearly with the training-set size otherwise (see
:func:`frequency_thresholds`).
"""

from .register import ShapesMetadata, register_shapes, shapes_class_frequencies
from .spec import (
    SHAPE_CLASS_SPECS,
    SHAPES_CLASSES,
    SHAPES_DATASET_NAMES,
    SHAPES_DEFAULTS,
    ShapeClass,
    ShapesParams,
    frequency_group,
    frequency_thresholds,
    shapes_root,
)
from .write import generate_shapes, shapes_paths

__all__ = [
    "SHAPE_CLASS_SPECS",
    "SHAPES_CLASSES",
    "SHAPES_DATASET_NAMES",
    "SHAPES_DEFAULTS",
    "ShapeClass",
    "ShapesMetadata",
    "ShapesParams",
    "frequency_group",
    "frequency_thresholds",
    "generate_shapes",
    "register_shapes",
    "shapes_class_frequencies",
    "shapes_paths",
    "shapes_root",
]
