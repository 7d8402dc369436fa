"""Deploying a trained model: tracing it to TorchScript or ONNX with Detectron2's
``TracingAdapter``, checking the exported model against the eager one (:mod:`.tracing`), and
loading it back as a callable that returns ``Instances`` (:mod:`.exported_model`).
``python -m rs_detectron2.export`` is the command line."""

from .exported_model import (
    FILE_NAMES,
    INFO_FILE,
    ExportedModel,
    export_inference,
    schema_from_dict,
    schema_to_dict,
)
from .tracing import (
    DEFAULT_ATOL,
    EXPORT_FORMATS,
    ExportError,
    compare_instances,
    config_input_format,
    export_model,
    rescaled,
    sample_inputs,
)

__all__ = [
    "DEFAULT_ATOL",
    "EXPORT_FORMATS",
    "FILE_NAMES",
    "INFO_FILE",
    "ExportError",
    "ExportedModel",
    "compare_instances",
    "config_input_format",
    "export_inference",
    "export_model",
    "rescaled",
    "sample_inputs",
    "schema_from_dict",
    "schema_to_dict",
]
