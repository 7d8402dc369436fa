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
"""

import argparse
import dataclasses
import json
import os
import sys
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.export import TracingAdapter
from detectron2.export import flatten as schemas
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

from .data import register_shapes

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportedModel",
    "compare_instances",
    "export_model",
    "main",
    "sample_inputs",
]

EXPORT_FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
INFO_FILE = "export.json"
# The legacy (TorchScript-based) ONNX exporter; 17 covers RoIAlign with aligned=True (opset 16).
ONNX_OPSET = 17
# float rounding between eager and exported kernels (ONNX Runtime's differ slightly)
DEFAULT_ATOL = 1e-3


class ExportError(RuntimeError):
    """The model cannot be exported in the asked format; the message says why and what to do."""


# ----------------------------------------------------------------------------------------------
# Inference function and schema (de)serialisation


def export_inference(model: nn.Module, inputs: List[Dict[str, torch.Tensor]]):
    """The function :class:`TracingAdapter` traces.

    Args:
        model: a Detectron2 meta-architecture in eval mode.
        inputs: ``[{"image": (C, H, W) tensor}]``, one image in the model's input format.
    Returns:
        ``[{"instances": Instances}]``: for a ``GeneralizedRCNN`` its ``inference`` without
        post-processing (boxes at the input's resolution, RoI masks), else ``model(inputs)``.
    """
    if isinstance(model, GeneralizedRCNN):
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]
    return [{"instances": model(inputs)[0]["instances"]}]


def schema_to_dict(schema: schemas.Schema) -> dict:
    """A JSON-able dict of a :mod:`detectron2.export.flatten` schema (its class name and fields,
    nested schemas included)."""
    out = {"schema": type(schema).__name__}
    for field in dataclasses.fields(schema):
        value = getattr(schema, field.name)
        if field.name == "schemas":
            value = [schema_to_dict(s) for s in value]
        out[field.name] = value
    return out


def schema_from_dict(data: dict) -> schemas.Schema:
    """Inverse of :func:`schema_to_dict`; only Detectron2's schema classes are accepted."""
    data = dict(data)
    name = data.pop("schema")
    cls = getattr(schemas, name, None)
    if not (isinstance(cls, type) and issubclass(cls, schemas.Schema)):
        raise ValueError(f"unknown output schema {name!r} in {INFO_FILE}")
    if "schemas" in data:
        data["schemas"] = [schema_from_dict(s) for s in data["schemas"]]
    return cls(**data)


# ----------------------------------------------------------------------------------------------
# Sample inputs


def _test_augmentations(cfg) -> List[T.Augmentation]:
    mapper = cfg.dataloader.test.get("mapper", None) if "dataloader" in cfg else None
    if mapper is None or mapper.get("augmentations") is None:
        return []
    return list(instantiate(mapper.augmentations))


def _input_format(cfg) -> str:
    mapper = cfg.dataloader.test.get("mapper", None) if "dataloader" in cfg else None
    if mapper is not None and mapper.get("image_format"):
        return mapper.image_format
    return cfg.model.get("input_format", "BGR")


def sample_inputs(cfg, sample_image: Optional[str] = None) -> List[dict]:
    """One input in Detectron2's format, as the config's test loader would give it.

    Args:
        cfg: a LazyConfig with ``model`` and (usually) ``dataloader.test``.
        sample_image: an image file, read in the model's input format and resized by the test
            mapper's augmentations; ``None``: the first image of ``dataloader.test`` (its
            dataset must be registered).
    Returns:
        ``[{"image": (C, H, W) uint8 tensor, "height": h, "width": w}]`` (original size).
    """
    if sample_image is not None:
        image = utils.read_image(sample_image, format=_input_format(cfg))
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        T.AugmentationList(_test_augmentations(cfg))(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return [{"image": tensor, "height": height, "width": width}]
    try:
        batch = next(iter(instantiate(cfg.dataloader.test)))
    except Exception as e:
        raise ExportError(
            f"could not read a sample image from the config's test loader ({type(e).__name__}: "
            f"{e}); pass --sample-image PATH"
        ) from e
    return [{k: batch[0][k] for k in ("image", "height", "width") if k in batch[0]}]


def rescaled(inputs: List[dict], factor: float = 0.75) -> List[dict]:
    """The input image resized by ``factor`` (a size the model was not traced with)."""
    image = inputs[0]["image"]
    size = [max(32, round(s * factor)) for s in image.shape[-2:]]
    resized = nn.functional.interpolate(image[None].float(), size=size, mode="bilinear")[0]
    return [{"image": resized.round().clamp(0, 255).to(image.dtype)}]


# ----------------------------------------------------------------------------------------------
# Comparison


def _fields(instances: Instances) -> Dict[str, torch.Tensor]:
    return {
        k: getattr(v, "tensor", v).detach().cpu().float() for k, v in instances.get_fields().items()
    }


def compare_instances(expected: Instances, actual: Instances, atol: float = DEFAULT_ATOL) -> float:
    """Check that two sets of detections are the same up to float rounding and the order of
    equal scores.

    Each expected detection is matched, in order, to the first unused actual one of the same class
    whose fields (``pred_boxes``, ``scores``, ``pred_masks``, ...) all lie within ``atol``.

    Args:
        expected, actual: detections with the same fields (e.g. eager and exported outputs).
        atol: largest absolute difference accepted in any field.
    Returns:
        the largest absolute difference over the matched fields.
    Raises:
        AssertionError: different fields, counts or a detection without a match.
    """
    a, b = _fields(expected), _fields(actual)
    assert set(a) == set(b), f"fields differ: {sorted(a)} vs {sorted(b)}"
    assert len(expected) == len(actual), f"{len(expected)} vs {len(actual)} detections"
    if len(expected) == 0:
        return 0.0
    # (N, N) largest difference over all fields between expected i and actual j
    diff = torch.zeros(len(expected), len(actual))
    for key in a:
        x, y = a[key].reshape(len(expected), -1), b[key].reshape(len(actual), -1)
        assert x.shape[1:] == y.shape[1:], f"{key}: {tuple(x.shape)} vs {tuple(y.shape)}"
        diff = torch.maximum(diff, (x[:, None] - y[None]).abs().amax(dim=2))
    used = torch.zeros(len(actual), dtype=torch.bool)
    worst = 0.0
    for i in range(len(expected)):
        candidates = torch.nonzero((diff[i] <= atol) & ~used).flatten()
        assert len(candidates), (
            f"detection {i} ({ {k: v[i].tolist() for k, v in a.items() if v[i].numel() <= 4} }) "
            f"has no match within {atol} (closest differs by {float(diff[i].min()):.4g})"
        )
        used[candidates[0]] = True
        worst = max(worst, float(diff[i, candidates[0]]))
    return worst


# ----------------------------------------------------------------------------------------------
# Export and loading


def _onnx_modules():
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(
            "onnx is not installed: pip install onnx (and onnxruntime to check the exported "
            "model's outputs); TorchScript export (--format torchscript) needs neither"
        ) from e
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    return onnxruntime


def _explain_trace_failure(model: nn.Module, error: Exception) -> str:
    name = type(model).__name__
    return (
        f"{name} could not be traced ({type(error).__name__}: {error}). Tracing records the "
        "tensor operations of one forward pass, so the outputs must flatten to tensors "
        "(Instances of tensors, Boxes, BitMasks) and the inference must not branch on Python "
        "values in ways that differ between images. Export the model's parts that trace, or "
        "run the eager model with rs_detectron2's predictor instead."
    )


def _trace_to_file(adapter: TracingAdapter, image: torch.Tensor, fmt: str, path: str) -> None:
    with warnings.catch_warnings():
        # export_model checks the outputs: tracing's own warnings and deprecations are noise here
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(adapter, (image,), check_trace=False), path)
            return
        torch.onnx.export(
            adapter,
            (image,),
            path,
            opset_version=ONNX_OPSET,
            dynamo=False,
            input_names=["image"],
            dynamic_axes={"image": {1: "height", 2: "width"}},
        )


def export_model(
    model: nn.Module,
    inputs: List[dict],
    fmt: str,
    output_dir: str,
    check_inputs: Optional[Sequence[List[dict]]] = None,
    atol: float = DEFAULT_ATOL,
    input_format: str = "BGR",
    extra_info: Optional[dict] = None,
    fixed_size: bool = False,
) -> Optional["ExportedModel"]:
    """Trace ``model`` on ``inputs``, write the exported model and its ``export.json`` to
    ``output_dir``, and check it against the eager model.

    Args:
        model: a Detectron2 meta-architecture (weights loaded), exported in eval mode.
        inputs: ``[{"image": (C, H, W) tensor, ...}]``: one image, already resized.
        fmt: ``"torchscript"`` (tracing) or ``"onnx"`` (legacy exporter, needs ``onnx``).
        output_dir: created if missing.
        check_inputs: inputs (same format) on which the exported model must give the eager
            model's detections; default: ``inputs`` and, unless ``fixed_size``, :func:`rescaled`
            ``inputs``.
        atol: see :func:`compare_instances`.
        input_format: the image channel order recorded in ``export.json``.
        extra_info: more entries for ``export.json`` (e.g. ``thing_classes``).
        fixed_size: the exported model is only valid at the sample's input size (for models
            whose inference depends on it, deployed on images all resized to one size);
            recorded in ``export.json`` and enforced by :class:`ExportedModel`.
    Returns:
        the exported model, loaded back from ``output_dir``; ``None`` for ONNX without
        ``onnxruntime`` (then nothing is checked).
    Raises:
        ExportError: an unknown format, ``onnx`` missing, a model that cannot be traced or
            exported, or exported outputs that differ from the eager ones.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {EXPORT_FORMATS}")
    onnxruntime = _onnx_modules() if fmt == "onnx" else None
    model.eval()
    image = inputs[0]["image"]
    # eval(): the ONNX exporter restores the adapter's mode afterwards, and with it the model's
    adapter = TracingAdapter(model, [{"image": image}], export_inference).eval()
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    try:
        _trace_to_file(adapter, image, fmt, path)
    except Exception as e:
        message = _explain_trace_failure(model, e)
        if fmt == "onnx":
            message += (
                " With ONNX, an operator without an ONNX counterpart also ends here: "
                "--format torchscript keeps every PyTorch operator."
            )
        raise ExportError(message) from e
    info = {
        "format": fmt,
        "file": FILE_NAMES[fmt],
        "meta_architecture": type(model).__name__,
        "input": {"layout": "CHW", "dtype": str(image.dtype).replace("torch.", "")},
        "input_format": input_format,
        "postprocessed": not isinstance(model, GeneralizedRCNN),
        "fixed_input_size": list(image.shape[-2:]) if fixed_size else None,
        "outputs_schema": schema_to_dict(adapter.outputs_schema),
        **(extra_info or {}),
    }
    with open(os.path.join(output_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=2)
    if fmt == "onnx" and onnxruntime is None:
        return None  # nothing here can run it: the outputs cannot be compared
    exported = ExportedModel(output_dir)
    if check_inputs is None:
        check_inputs = [inputs] if fixed_size else [inputs, rescaled(inputs)]
    for check in check_inputs:
        image = check[0]["image"]
        with torch.no_grad():
            expected = export_inference(model, [{"image": image}])[0]["instances"]
        try:
            compare_instances(expected, exported.raw(image), atol)
        except Exception as e:  # wrong outputs, or a traced shape that no longer fits
            lines = [line for line in str(e).splitlines() if line.strip()] or [""]
            # a TorchScript error ends with the Python error under its traceback
            raise ExportError(
                f"the exported {type(model).__name__} does not reproduce the eager model on a "
                f"{tuple(image.shape[-2:])} input ({type(e).__name__}: {lines[-1]}). Its inference "
                "depends on the input (sizes or values) in a way that tracing fixed to the "
                "sample's. If every image is resized to one size, export at that size with "
                "--fixed-size; otherwise run the eager model."
            ) from e
    return exported


class ExportedModel:
    """A model written by :func:`export_model`, called like a Detectron2 model in eval mode.

    Example::

        model = ExportedModel("output/export")
        outputs = model([{"image": image_chw, "height": h, "width": w}])
        outputs[0]["instances"]  # boxes, scores, classes (and masks) at h x w
    """

    def __init__(self, output_dir: str):
        """
        Args:
            output_dir: the folder :func:`export_model` wrote (``export.json`` and the model).
        """
        with open(os.path.join(output_dir, INFO_FILE)) as f:
            self.info = json.load(f)
        self.schema = schema_from_dict(self.info["outputs_schema"])
        path = os.path.join(output_dir, self.info["file"])
        if self.info["format"] == "torchscript":
            self._model = torch.jit.load(path, map_location="cpu")
            self._session = None
        else:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(path)

    def raw(self, image: torch.Tensor) -> Instances:
        """Detections of one (C, H, W) input image, as the exported graph gives them (for a
        two-stage model, at the input's resolution and with RoI masks)."""
        fixed = self.info.get("fixed_input_size")
        if fixed is not None and list(image.shape[-2:]) != fixed:
            raise ValueError(
                f"this model was exported for {tuple(fixed)} inputs only, got "
                f"{tuple(image.shape[-2:])}"
            )
        if self._session is None:
            flat = self._model(image)
        else:
            name = self._session.get_inputs()[0].name
            flat = [torch.as_tensor(x) for x in self._session.run(None, {name: image.numpy()})]
        instances = self.schema(flat)[0]["instances"]
        # the graph returns the size as a tensor; Instances elsewhere hold a tuple of ints
        return Instances(tuple(int(v) for v in instances.image_size), **instances.get_fields())

    def __call__(self, inputs: List[dict]) -> List[Dict[str, Instances]]:
        """
        Args:
            inputs: Detectron2 inputs: ``image`` (C, H, W) in the model's input format and size,
                optional ``height`` / ``width`` of the output (default: the input's size).
        Returns:
            ``[{"instances": Instances}]`` per input, post-processed to ``height`` x ``width``
            (boxes rescaled, masks pasted), as the eager model returns them.
        """
        results = []
        for item in inputs:
            instances = self.raw(item["image"])
            height, width = item["image"].shape[-2:]
            size = (item.get("height", height), item.get("width", width))
            results.append({"instances": detector_postprocess(instances, *size)})
        return results


# ----------------------------------------------------------------------------------------------
# Command line


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
    register_shapes()  # lazy: nothing is generated unless the shapes data is read
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
        exported = export_model(
            model,
            inputs,
            args.format,
            args.output,
            atol=args.atol,
            input_format=_input_format(cfg),
            extra_info=_class_names(cfg),
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


def _class_names(cfg) -> dict:
    """``{"thing_classes": [...]}`` of the config's test dataset when it is registered, else {}."""
    try:
        names = cfg.dataloader.test.dataset.names
        classes = MetadataCatalog.get(names if isinstance(names, str) else names[0]).thing_classes
    except Exception:  # no dataloader, or a dataset this process has not registered
        return {}
    return {"thing_classes": list(classes)}


if __name__ == "__main__":
    sys.exit(main())
