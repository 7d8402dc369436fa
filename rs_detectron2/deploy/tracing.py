"""Tracing a Detectron2 model to TorchScript or ONNX through Detectron2's
:class:`~detectron2.export.TracingAdapter`, and checking the exported model against the eager one.

The model is traced on one sample input (:func:`sample_inputs`: an image resized by the config's
test augmentations, or the first image of ``dataloader.test``); :func:`export_model` then runs the
exported model on that input and on a rescaled copy of it (:func:`rescaled`) and compares its
detections with the eager model's (:func:`compare_instances`), so that a trace that baked in a
data-dependent branch is caught at export, not in deployment. A model whose inference depends on
the input size is exported with ``fixed_size``: checked at the sample's size only, and refused at
any other by :class:`~rs_detectron2.deploy.ExportedModel`.

What is exported is Detectron2's inference path (:func:`~rs_detectron2.deploy.export_inference`):
for two-stage models (``GeneralizedRCNN``) the detections before :func:`detector_postprocess`
(boxes at the network input's resolution, masks as 28 x 28 RoI masks), for the other
meta-architectures their ``forward`` at the input's own size.
"""

import json
import os
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from detectron2.config import instantiate
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Instances

from .exported_model import FILE_NAMES, INFO_FILE, ExportedModel, export_inference, schema_to_dict

__all__ = [
    "DEFAULT_ATOL",
    "EXPORT_FORMATS",
    "ExportError",
    "compare_instances",
    "config_input_format",
    "export_model",
    "rescaled",
    "sample_inputs",
]

EXPORT_FORMATS = ("torchscript", "onnx")
# The legacy (TorchScript-based) ONNX exporter; 17 covers RoIAlign with aligned=True (opset 16).
ONNX_OPSET = 17
# float rounding between eager and exported kernels (ONNX Runtime's differ slightly)
DEFAULT_ATOL = 1e-3


class ExportError(RuntimeError):
    """The model cannot be exported in the asked format; the message says why and what to do."""


def _test_augmentations(cfg) -> List[T.Augmentation]:
    mapper = cfg.dataloader.test.get("mapper", None) if "dataloader" in cfg else None
    if mapper is None or mapper.get("augmentations") is None:
        return []
    return list(instantiate(mapper.augmentations))


def config_input_format(cfg) -> str:
    """The channel order of the model's input: the test mapper's ``image_format``, else
    ``model.input_format`` (Detectron2's default BGR)."""
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
        image = utils.read_image(sample_image, format=config_input_format(cfg))
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
