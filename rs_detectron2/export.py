"""Export a trained model to TorchScript or ONNX through Detectron2's :class:`TracingAdapter`.

    python -m rs_detectron2.export --config-file CFG --weights W --format torchscript \\
        --output DIR [--sample-image PATH] [KEY=VALUE ...]

The model is traced on one sample input (``--sample-image`` resized by the config's test
augmentations, or else the first image of ``dataloader.test``), then the exported model is run on
that input and on a rescaled copy of it, and its detections are compared with the eager model's:
a trace that baked in a data-dependent branch is caught here, not in deployment. A model whose
inference depends on the input size (and which is deployed on images all resized to one size) is
exported with ``--fixed-size``: checked at the sample's size only, and refused at any other.

The model is built and loaded as ``predict`` does it: with what the weights were trained for (class
count, input format, pixel mean / std, test resize, saved with them by ``train_net.py``), and only
when every weight fits the model (exit status 1 otherwise: exporting random layers is never
useful). ``DIR`` receives ``model.ts`` (or ``model.onnx``) and ``export.json``: the schema that
rebuilds ``Instances`` from the flat outputs, the input format, the test resize, the class names
and the dataset's category ids. :class:`ExportedModel` reads both; its ``predict`` takes original
images and applies the test resize itself.

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

# importing the data package registers its datasets (rs_shapes_*), which a config's test loader
# may name
from .data import UserDatasetError, add_dataset_argument, register_user_datasets
from .deploy import (
    DEFAULT_ATOL,
    EXPORT_FORMATS,
    FILE_NAMES,
    INFO_FILE,
    ExportedModel,
    ExportError,
    compare_instances,
    config_input_format,
    export_model,
    sample_inputs,
)
from .engine.model_info import describe_augmentations
from .engine.predictor import LazyPredictor, WeightsMismatchError

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
    add_dataset_argument(parser)
    parser.add_argument("opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    return parser


def _error(message: str, status: int) -> int:
    print(f"export failed: {message}", file=sys.stderr)
    return status


def _trained_info(predictor: LazyPredictor) -> dict:
    """What ``export.json`` records of the model's training, for :class:`ExportedModel`."""
    meta = predictor.metadata
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
    names = meta.get("thing_classes", None)
    return {
        "num_classes": predictor.num_classes,
        "thing_classes": None if names is None else list(names),
        "category_ids": sorted(id_map, key=id_map.get) if id_map else None,
        "test_augmentations": describe_augmentations(predictor.augmentations.augs),
        "model_info": predictor.model_info,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns its exit status (0 on success, 1 for weights that do not fit
    the model, 2 with a message on any other failure)."""
    args = argument_parser().parse_intermixed_args(argv)
    try:
        register_user_datasets(args.dataset)
        # exported models run on CPU here; the traced graph carries no device of its own choosing
        predictor = LazyPredictor(args.config_file, args.weights, device="cpu", overrides=args.opts)
    except WeightsMismatchError as e:
        return _error(f"{e} An export of weights that do not fit would hold random layers.", 1)
    except (AssertionError, OSError, ValueError, UserDatasetError) as e:
        return _error(f"cannot load --weights {args.weights}: {e}", 2)
    for warning in predictor.warnings:
        print(f"export: warning: {warning}", file=sys.stderr)
    try:
        cfg = predictor.cfg
        exported = export_model(
            predictor.model,
            sample_inputs(cfg, args.sample_image),
            args.format,
            args.output,
            atol=args.atol,
            input_format=config_input_format(cfg),
            extra_info=_trained_info(predictor),
            fixed_size=args.fixed_size,
        )
    except ExportError as e:
        return _error(str(e), 2)
    print(f"wrote {os.path.join(args.output, FILE_NAMES[args.format])} and {INFO_FILE}")
    if exported is None:
        print("onnxruntime is not installed: the ONNX model's outputs were not checked")
    else:
        print("the exported model gives the eager model's detections on the sample image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
