"""A predictor for LazyConfig models: the counterpart of Detectron2's ``DefaultPredictor``.

``DefaultPredictor`` reads a yacs config (``cfg.MODEL.WEIGHTS``, ``cfg.INPUT.*``); the models of
this package are LazyConfigs. :class:`LazyPredictor` takes the same steps from a LazyConfig: build
the model, load the weights, convert the image to ``model.input_format``, apply the test
augmentations of ``dataloader.test.mapper`` (the test resize), run the model in eval mode and map
the outputs back to the original image size. It also keeps only the detections at or above a score
threshold: one for every class, or one per class, such as the LRP-optimal thresholds written by
``train_net.py --eval-only --lrp-thresholds-out FILE`` (see docs/evaluation.md).

    predictor = LazyPredictor("quick_schedules/rs_mask_rcnn_tiny.py", "output/model_final.pth",
                              class_thresholds="thresholds.json")
    instances = predictor(cv2.imread("image.jpg"))        # BGR, H x W x 3
"""

import copy
import logging
import os
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.structures import Instances

# importing the data package registers its datasets (rs_shapes_*), whose metadata a config names
from .. import data  # noqa: F401
from ..evaluation.thresholds import read_thresholds, resolve_class_thresholds
from ..model_zoo import get_config_file
from .checkpoint import load_weights
from .model_info import (
    ModelInfoMismatch,
    adopt_model_info,
    check_dataset_classes,
    class_count,
    metadata_from_info,
    read_model_info,
)

__all__ = ["LazyPredictor", "ModelInfoMismatch", "WeightsMismatchError", "load_lazy_config"]

logger = logging.getLogger(__name__)

INPUT_FORMATS = ("BGR", "RGB")


class WeightsMismatchError(ValueError):
    """The checkpoint's weights do not match the model of the config.

    Attributes:
        weights (str): the checkpoint.
        problems (list[str]): the keys that did not match
            (:meth:`~rs_detectron2.engine.AtomicCheckpointer.incompatible_keys`).
    """

    def __init__(self, weights: str, problems: Sequence[str], info: Optional[Mapping] = None):
        self.weights, self.problems = weights, list(problems)
        trained = ""
        if info and info.get("config_file"):
            trained = f" They were trained with {info['config_file']}: use that config."
        super().__init__(
            f"the weights {weights} do not match the model of the config:\n  "
            + "\n  ".join(self.problems)
            + f"\nIs it a checkpoint of this config?{trained}"
        )


def _config_and_weights(config, weights, overrides):
    """The config with what the weights were trained for (see :func:`adopt_model_info`), the
    weights (``train.init_checkpoint`` when None) and their model_info."""
    cfg = load_lazy_config(config, overrides)
    if weights is None:
        weights = cfg.get("train", {}).get("init_checkpoint", "")
    if not weights:
        raise ValueError("LazyPredictor needs weights: pass weights= or set train.init_checkpoint")
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights {weights} do not exist")
    info = read_model_info(weights)
    if info:
        cfg = adopt_model_info(load_lazy_config(config), info, overrides, weights)
    return cfg, weights, info


def load_lazy_config(config, overrides: Sequence[str] = ()) -> DictConfig:
    """A LazyConfig from a file, a shipped config's name or a loaded config.

    Args:
        config: a path to a LazyConfig file (``.py`` / ``.yaml``), the name of a config shipped
            in ``configs/`` (e.g. ``"quick_schedules/rs_mask_rcnn_tiny.py"``), or a loaded config
            (copied, never modified).
        overrides: ``KEY=VALUE`` strings applied with ``LazyConfig.apply_overrides``.

    Returns:
        DictConfig: the config.

    Raises:
        FileNotFoundError: ``config`` is neither a file nor a shipped config.
    """
    if isinstance(config, (DictConfig, Mapping)):
        cfg = copy.deepcopy(config)
    else:
        path = os.fspath(config)
        if not os.path.isfile(path):
            try:
                path = get_config_file(path)
            except RuntimeError:
                raise FileNotFoundError(
                    f"config {config!r} is neither a file nor a config shipped in configs/ (see "
                    "rs_detectron2.model_zoo.list_configs())"
                ) from None
        cfg = LazyConfig.load(path)
    if overrides:
        cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    return cfg


def _test_dataset_name(cfg) -> Optional[str]:
    names = cfg.get("dataloader", {}).get("test", {}).get("dataset", {}).get("names")
    if isinstance(names, str):
        return names
    if names:
        return str(list(names)[0])
    return None


class LazyPredictor:
    """Run a LazyConfig model on images: config + weights in, ``Instances`` out.

    Inputs follow Detectron2's conventions: one image is a ``uint8`` numpy array H x W x 3, in BGR
    order by default (as ``cv2.imread`` returns it); a list of images runs as one batch. Outputs
    are ``Instances`` in the coordinates of the original image (``pred_boxes``, ``scores``,
    ``pred_classes``, and ``pred_masks`` for mask models), on the CPU, sorted as the model sorts
    them, holding only the detections at or above their score threshold.

    Weights written by this package's training carry what the model was trained for
    (:mod:`~rs_detectron2.engine.model_info`): the class count, names and category ids, the input
    format, pixel mean / std and the test resize. They are used instead of the config's, so a
    model runs as it was trained without repeating the training's overrides; an override that
    contradicts them stops with :class:`ModelInfoMismatch`.

    Attributes:
        cfg: the config (with what the weights were trained for, and the overrides).
        model: the model, in eval mode on :attr:`device`.
        model_info (dict or None): what the weights say they were trained for.
        metadata (Metadata): the classes: ``thing_classes`` (and
            ``thing_dataset_id_to_contiguous_id``) of the weights, else of the ``metadata``
            argument or the config's test dataset when those have the model's class count, else
            empty (labels are class indices; :attr:`warnings` says why).
        warnings (list[str]): what the caller should know about the classes (e.g. weights without
            class names).
        input_format (str): the channel order the model takes.
        thresholds (torch.Tensor or None): (K,) the per-class score thresholds in use (a class
            without its own has the global threshold, or 0), None when nothing is filtered.
    """

    def __init__(
        self,
        config,
        weights: Optional[str] = None,
        *,
        device: Optional[str] = None,
        score_threshold: Optional[float] = None,
        class_thresholds: Union[None, str, Mapping] = None,
        overrides: Sequence[str] = (),
        image_format: str = "BGR",
        metadata: Optional[Metadata] = None,
        allow_partial_weights: bool = False,
    ):
        """
        Args:
            config: a LazyConfig file, the name of a shipped config, or a loaded config (see
                :func:`load_lazy_config`).
            weights: a checkpoint (path or URL Detectron2's checkpointer reads); None takes the
                config's ``train.init_checkpoint``.
            device: e.g. "cpu", "cuda", "cuda:1"; None: CUDA when available, else CPU.
            score_threshold: keep detections with score >= this (every class without a threshold
                of its own in ``class_thresholds``); None keeps what the model returns.
            class_thresholds: per-class thresholds: a thresholds file (written by
                ``train_net.py --eval-only --lrp-thresholds-out``; its classes must be the
                model's) or a dict {class index or name: threshold}.
            overrides: ``KEY=VALUE`` config overrides.
            image_format: "BGR" or "RGB", the channel order of the images given to the predictor.
            metadata: the classes' metadata of a dataset the images belong to (e.g. to compare
                with its ground truth); its classes must be the model's. None: the weights'.
            allow_partial_weights: load a checkpoint whose keys do not all match the model
                (the keys that do not match keep their random initialisation).

        Raises:
            FileNotFoundError: the config or the weights do not exist.
            WeightsMismatchError: weights of another model.
            ModelInfoMismatch: overrides or ``metadata`` that contradict what the weights were
                trained for.
            ValueError: no weights, a bad image format, or thresholds that do not fit the model's
                classes.
        """
        if image_format not in INPUT_FORMATS:
            raise ValueError(f"image_format must be one of {INPUT_FORMATS}, got {image_format!r}")
        self.image_format = image_format
        self.warnings: List[str] = []
        self.cfg, self.weights, self.model_info = _config_and_weights(config, weights, overrides)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.num_classes = class_count(self.cfg)[1]
        self.metadata = self._metadata(metadata)
        for warning in self.warnings:
            logger.warning(warning)

        self.model = instantiate(self.cfg.model)
        self.model.to(self.device).eval()
        self.input_format = getattr(self.model, "input_format", None) or self.cfg.model.get(
            "input_format", "BGR"
        )
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(
                f"model.input_format {self.input_format!r} is not one of {INPUT_FORMATS}"
            )
        problems = load_weights(self.model, self.weights)
        if problems and not allow_partial_weights:
            raise WeightsMismatchError(self.weights, problems, self.model_info)
        augs = self.cfg.get("dataloader", {}).get("test", {}).get("mapper", {}).get("augmentations")
        self.augmentations = T.AugmentationList(instantiate(augs) if augs else [])
        self.thresholds = self._thresholds(score_threshold, class_thresholds)

    def _metadata(self, given: Optional[Metadata]) -> Metadata:
        """The classes: the weights', checked against ``given``; else ``given`` or the test
        dataset's when their class count is the model's; else none (class indices)."""
        info = self.model_info
        if info and info.get("thing_classes") is not None:
            if given is None:
                return metadata_from_info(info)
            check_dataset_classes(info, given, given.get("name", "given"), self.weights)
            return given
        source = "the metadata given"
        if given is None:
            name = _test_dataset_name(self.cfg)
            registered = name is not None and name in DatasetCatalog.list()
            given = MetadataCatalog.get(name) if registered else Metadata()
            source = f"the config's test dataset {name}"
            if not registered:
                self.warnings.append(
                    f"the weights carry no class names and {source} is not registered in this "
                    "process: detections are labelled by class index"
                )
                return Metadata()
        names = given.get("thing_classes", None)
        if names is None:
            self.warnings.append(f"{source} has no class names: detections are labelled by index")
            return Metadata()
        if self.num_classes is not None and len(names) != self.num_classes:
            self.warnings.append(
                f"the model predicts {self.num_classes} classes but {source} has {len(names)} "
                f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}), and the weights "
                "carry no class names: detections are labelled by class index"
            )
            return Metadata()
        if not info:
            self.warnings.append(
                f"the weights carry no class names (not written by rs_detectron2's training): "
                f"the names are those of {source}"
            )
        return given

    def _class_names(self) -> Optional[List[str]]:
        names = self.metadata.get("thing_classes", None)
        return list(names) if names is not None else None

    def _thresholds(self, score_threshold, class_thresholds) -> Optional[torch.Tensor]:
        if score_threshold is not None and not np.isfinite(score_threshold):
            raise ValueError(f"score_threshold must be a number, got {score_threshold!r}")
        if class_thresholds is None:
            if score_threshold is None:
                return None
            return torch.tensor([float(score_threshold)])  # one value for every class
        names = self._class_names()
        if isinstance(class_thresholds, Mapping):
            if names is None and not all(isinstance(k, int) for k in class_thresholds):
                raise ValueError(
                    "class thresholds by name need class names, and neither the weights nor the "
                    "config's test dataset give them: key them by class index or pass metadata="
                )
            num = self.num_classes or (len(names) if names else max(class_thresholds) + 1)
            per_class = resolve_class_thresholds(class_thresholds, names, num)
        else:
            path = os.fspath(class_thresholds)
            per_class = list(read_thresholds(path, names).thresholds)
            if self.num_classes is not None and len(per_class) != self.num_classes:
                raise ValueError(
                    f"{path} has thresholds for {len(per_class)} classes but the model predicts "
                    f"{self.num_classes}. Use a thresholds file written for this model."
                )
        default = 0.0 if score_threshold is None else float(score_threshold)
        values = [default if t is None else t for t in per_class]
        return torch.tensor(values, dtype=torch.float64)

    def _inputs(self, image: np.ndarray) -> dict:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"LazyPredictor takes H x W x 3 numpy images, got {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"LazyPredictor takes uint8 images, got {image.dtype}")
        if self.image_format != self.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor.to(self.device), "height": height, "width": width}

    def keep(self, instances: Instances) -> Instances:
        """The detections of ``instances`` at or above their class's threshold.

        Args:
            instances: one image's predictions, with ``scores`` (N,) and ``pred_classes`` (N,).

        Returns:
            Instances: the kept ones, in their order (all of them when no threshold is set).
        """
        if self.thresholds is None or len(instances) == 0:
            return instances
        thr = self.thresholds.to(instances.scores.device)
        per_det = thr[0].expand(len(instances)) if len(thr) == 1 else thr[instances.pred_classes]
        # Scores are float32 and thresholds found by oLRP are scores: compare in float64, exactly.
        return instances[instances.scores.double() >= per_det]

    @torch.no_grad()
    def __call__(self, images: Union[np.ndarray, Sequence[np.ndarray]]):
        """
        Args:
            images: one image (np.ndarray, H x W x 3, uint8, in ``image_format``) or a list of
                them, run as one batch.

        Returns:
            Instances for one image, list[Instances] for a list (CPU, original image coordinates,
            thresholds applied).
        """
        single = isinstance(images, np.ndarray)
        batch = [images] if single else list(images)
        if not batch:
            return []
        outputs = self.model([self._inputs(img) for img in batch])
        results = [self.keep(out["instances"].to("cpu")) for out in outputs]
        return results[0] if single else results
