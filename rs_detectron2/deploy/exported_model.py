"""The model :func:`~rs_detectron2.deploy.export_model` writes, loaded back and called like a
Detectron2 model.

The folder holds the traced graph (``model.ts`` for TorchScript, ``model.onnx`` for ONNX) and
``export.json``: the input format and the schema that rebuilds ``Instances`` from the graph's flat
outputs (Detectron2's :mod:`detectron2.export.flatten` schemas, stored as JSON).
"""

import dataclasses
import json
import os
from typing import Dict, List

import torch
from torch import nn

from detectron2.export import flatten as schemas
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

__all__ = [
    "FILE_NAMES",
    "INFO_FILE",
    "ExportedModel",
    "export_inference",
    "schema_from_dict",
    "schema_to_dict",
]

FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
INFO_FILE = "export.json"


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
