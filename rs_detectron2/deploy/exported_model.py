"""The model :func:`~rs_detectron2.deploy.export_model` writes, loaded back and called like a
Detectron2 model.

The folder holds the traced graph (``model.ts`` for TorchScript, ``model.onnx`` for ONNX) and
``export.json``: the schema that rebuilds ``Instances`` from the graph's flat outputs (Detectron2's
:mod:`detectron2.export.flatten` schemas, stored as JSON) and what the model was trained for: the
input format, the test resize, the class names and the dataset's category ids.
"""

import dataclasses
import json
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.export import flatten as schemas
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

from ..engine.model_info import augmentations_from_info, metadata_from_info

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

    Two ways to call it::

        model = ExportedModel("output/export")
        instances = model.predict(cv2.imread("photo.jpg"))   # original image, BGR, H x W x 3
        model.metadata.thing_classes[int(instances.pred_classes[0])]   # the class's name

        # Detectron2's convention: the image already resized by the test resize (model.preprocess)
        outputs = model([{"image": image_chw, "height": h, "width": w}])

    :meth:`predict` applies the model's own preprocessing (channel order and the test resize
    recorded at export, as ``predict`` and :class:`~rs_detectron2.engine.LazyPredictor` apply them)
    and returns the detections at the original size. :meth:`__call__` takes inputs as a Detectron2
    model does and refuses an image whose size is not what the test resize gives for its
    ``height`` x ``width`` (an image that was not resized would give other detections).

    Attributes:
        info (dict): ``export.json``.
        metadata (Metadata): the trained classes (``thing_classes`` and
            ``thing_dataset_id_to_contiguous_id`` when the export recorded them).
        input_format (str): the channel order of the exported graph's input.
        augmentations (list or None): the test-time augmentations (the test resize); None for an
            export that did not record them.
    """

    def __init__(self, output_dir: str):
        """
        Args:
            output_dir: the folder :func:`export_model` wrote (``export.json`` and the model).
        """
        with open(os.path.join(output_dir, INFO_FILE)) as f:
            self.info = json.load(f)
        self.schema = schema_from_dict(self.info["outputs_schema"])
        self.metadata: Metadata = metadata_from_info(self.info)
        self.input_format = self.info.get("input_format", "BGR")
        augs = self.info.get("test_augmentations")
        self.augmentations = None if augs is None else augmentations_from_info(augs)
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

    def resized_size(self, height: int, width: int) -> Tuple[int, int]:
        """The (height, width) the test resize gives an image of ``height`` x ``width``."""
        if not self.augmentations:
            return height, width
        boxes = np.array([[0.0, 0.0, float(width), float(height)]])
        h, w = height, width
        for aug in self.augmentations:
            transform = aug.get_transform(np.empty((h, w, 3), dtype=np.uint8))
            boxes = transform.apply_box(boxes)
            w, h = int(round(boxes[0, 2] - boxes[0, 0])), int(round(boxes[0, 3] - boxes[0, 1]))
        return h, w

    def preprocess(self, image: np.ndarray, image_format: str = "BGR") -> dict:
        """One original image as the exported graph takes it.

        Args:
            image: H x W x 3 ``uint8`` array in ``image_format`` ("BGR", as ``cv2.imread``
                gives it, or "RGB").
        Returns:
            ``{"image": (3, H', W') uint8 tensor, "height": H, "width": W}``: in the model's
            channel order and resized by the test resize.
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"ExportedModel.predict takes H x W x 3 numpy images, got {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"ExportedModel.predict takes uint8 images, got {image.dtype}")
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"image_format must be BGR or RGB, got {image_format!r}")
        if image_format != self.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        if self.augmentations:
            T.AugmentationList(self.augmentations)(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def predict(
        self, images: Union[np.ndarray, Sequence[np.ndarray]], image_format: str = "BGR"
    ) -> Union[Instances, List[Instances]]:
        """Detections of original images, preprocessed as the model was trained to see them.

        Args:
            images: one H x W x 3 ``uint8`` image in ``image_format``, or a list of them.
        Returns:
            Instances (a list for a list): boxes, scores, classes (and masks) at each image's
            original size; every detection the model returns (no score threshold).
        """
        single = isinstance(images, np.ndarray)
        batch = [images] if single else list(images)
        results = [self([self.preprocess(im, image_format)])[0]["instances"] for im in batch]
        return results[0] if single else results

    def _check_size(self, item: dict) -> None:
        if self.augmentations is None:
            return  # an export that did not record its test resize: the caller's business
        height, width = item["image"].shape[-2:]
        original = (item.get("height", height), item.get("width", width))
        expected = self.resized_size(*original)
        if (height, width) != expected:
            raise ValueError(
                f"the image is {height} x {width}, but this model takes images resized by its "
                f"test resize ({', '.join(map(repr, self.augmentations))}): an original of "
                f"{original[0]} x {original[1]} becomes {expected[0]} x {expected[1]}. Pass the "
                "original image to ExportedModel.predict(), or resize it with "
                "ExportedModel.preprocess() first."
            )

    def __call__(self, inputs: List[dict]) -> List[Dict[str, Instances]]:
        """
        Args:
            inputs: Detectron2 inputs: ``image`` (C, H, W) in the model's input format, already
                resized by the test resize (:meth:`preprocess`), and the original ``height`` /
                ``width`` (default: the image's size, then the image must be one the test resize
                leaves unchanged).
        Returns:
            ``[{"instances": Instances}]`` per input, post-processed to ``height`` x ``width``
            (boxes rescaled, masks pasted), as the eager model returns them.
        Raises:
            ValueError: an image of another size than the test resize gives.
        """
        results = []
        for item in inputs:
            self._check_size(item)
            instances = self.raw(item["image"])
            height, width = item["image"].shape[-2:]
            size = (item.get("height", height), item.get("width", width))
            results.append({"instances": detector_postprocess(instances, *size)})
        return results
