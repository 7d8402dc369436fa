"""Export a trained model to TorchScript or ONNX through Detectron2's :class:`TracingAdapter`.

    python -m rs_detectron2.export --config-file CFG --weights W --format torchscript \\
        --output DIR [--sample-image PATH] [KEY=VALUE ...]

The model is traced on one sample input (``--sample-image`` resized by the config's test
augmentations, or else the first image of ``dataloader.test``), then the exported model is run on
that input and on a rescaled copy of it, and its detections are compared with the eager model's:
a trace that baked in a data-dependent branch is caught here, not in deployment. A model whose
inference depends on the input size (and which is deployed on images all resized to one size) is
exported with ``--fixed-size``: checked at the sample's size only, and refused at any other.

``DIR`` receives ``model.ts`` (or ``model.onnx``) and ``export.json``: the input format and the
schema that rebuilds ``Instances`` from the flat outputs (:class:`ExportedModel` reads both).

What is exported is Detectron2's inference path: for two-stage models (``GeneralizedRCNN``) the
detections before :func:`detector_postprocess` (boxes at the network input's resolution, masks
as 28 x 28 RoI masks), for the other meta-architectures their ``forward`` at the input's own
size. :class:`ExportedModel` applies the post-processing to the caller's image size, as Detectron2's
``tools/deploy/export_model.py`` does in its evaluation.

This module is the command line; the tracing, the check and :class:`ExportedModel` are in
:mod:`rs_detectron2.deploy` (their names are re-exported here).
"""

import argparse
import os
import sys
from typing import Optional, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate

# importing the data package registers its datasets (rs_shapes_*), which a config's test loader
# may name
from . import data  # noqa: F401
from .deploy import (
    DEFAULT_ATOL,
    EXPORT_FORMATS,
    FILE_NAMES,
    INFO_FILE,
    ExportedModel,
    ExportError,
    compare_instances,
    config_class_names,
    config_input_format,
    export_model,
    sample_inputs,
)

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportedModel",
    "compare_instances",
    "export_model",
    "main",
    "sample_inputs",
]


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rs_detectron2.export",
        description="Export a LazyConfig model to TorchScript (tracing) or ONNX and check that "
        "the exported model gives the eager model's detections.",
    )
    parser.add_argument("--config-file", required=True, help="LazyConfig file (.py or .yaml)")
    parser.add_argument("--weights", required=True, help="checkpoint to export")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    parser.add_argument("--output", required=True, help="folder for the model and export.json")
    parser.add_argument("--sample-image", help="image to trace with (default: first test image)")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="check tolerance")
    parser.add_argument(
        "--fixed-size",
        action="store_true",
        help="export for the sample's input size only (models whose inference depends on it)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE config overrides")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns its exit status (0 on success, 2 with a message on failure)."""
    args = argument_parser().parse_args(argv)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    # exported models run on CPU here; the traced graph carries no device of its own choosing
    model = instantiate(cfg.model).to("cpu").eval()
    try:
        DetectionCheckpointer(model).load(args.weights)
    except (AssertionError, OSError) as e:  # Detectron2 asserts that the file exists
        print(f"export failed: cannot load --weights {args.weights}: {e}", file=sys.stderr)
        return 2
    try:
        inputs = sample_inputs(cfg, args.sample_image)
        classes = config_class_names(cfg)
        exported = export_model(
            model,
            inputs,
            args.format,
            args.output,
            atol=args.atol,
            input_format=config_input_format(cfg),
            extra_info={} if classes is None else {"thing_classes": classes},
            fixed_size=args.fixed_size,
        )
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(args.output, FILE_NAMES[args.format])} and {INFO_FILE}")
    if exported is None:
        print("onnxruntime is not installed: the ONNX model's outputs were not checked")
    else:
        print("the exported model gives the eager model's detections on the sample image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
