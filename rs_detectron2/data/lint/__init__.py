"""A linter for COCO- and LVIS-format datasets: what would make a long training run fail or learn
from wrong targets, found before the run starts.

It reads a registered dataset's annotation file (:mod:`.annotations`: valid JSON, ids, categories,
counts), checks the geometry of its annotations (:mod:`.geometry_checks`: boxes against the image
and against their own masks, empty masks, RLE sizes), decodes its image files
(:mod:`.image_checks`) and checks it against a config (:mod:`.config_checks` reads the config:
its class-count keys, whether its model trains on masks; :mod:`.dataset_checks` holds the data
against that: class count, mask format, masks at all). Every check returns
:class:`~.findings.Finding` objects and prints nothing; :func:`~.findings.format_findings` makes
the report. ``python -m rs_detectron2.data.check`` is its command line, and ``train_net.py`` runs
it on the training sets at every start.

The linter drops nothing itself: the training-time filter of degenerate annotations is
:mod:`rs_detectron2.data.sanitize`, whose rules the linter reuses to count what training would drop.
"""

from .annotations import (
    AnnotationReport,
    UserDatasetError,
    detect_format,
    inspect_annotations,
    read_annotation_json,
    summary_findings,
)
from .config_checks import (
    box_only_config,
    class_count_disagreement,
    class_count_key,
    class_count_keys,
    model_trains_masks,
)
from .dataset_checks import (
    MASK_FORMAT_KEY,
    ConfigFacts,
    check_dataset,
    config_facts,
    dataset_names_from_config,
    required_mask_format,
)
from .findings import ERROR, INFO, WARNING, Finding, examples, exit_code, format_findings
from .geometry_checks import ImageRecord, check_geometry
from .image_checks import check_image_files, sample_images

__all__ = [
    "box_only_config",
    "class_count_disagreement",
    "class_count_key",
    "class_count_keys",
    "model_trains_masks",
    "ERROR",
    "INFO",
    "MASK_FORMAT_KEY",
    "WARNING",
    "AnnotationReport",
    "ConfigFacts",
    "Finding",
    "ImageRecord",
    "UserDatasetError",
    "check_dataset",
    "check_geometry",
    "check_image_files",
    "config_facts",
    "dataset_names_from_config",
    "detect_format",
    "examples",
    "exit_code",
    "format_findings",
    "inspect_annotations",
    "read_annotation_json",
    "required_mask_format",
    "sample_images",
    "summary_findings",
]
