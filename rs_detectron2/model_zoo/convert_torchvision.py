"""Convert torchvision's ImageNet ResNet checkpoint into the weights our ``*_tv.py`` configs load.

    python -m rs_detectron2.model_zoo.convert_torchvision \\
        --input resnet50-19c8e357.pth --output torchvision_R_50.pkl

The input is torchvision's published ImageNet state dict of ``resnet50``: the file mmdetection
loads for ``torchvision://resnet50`` in the authors' configs is
``https://download.pytorch.org/models/resnet50-19c8e357.pth`` (torchvision's ``IMAGENET1K_V1``
weights; the ``IMAGENET1K_V2`` weights come from a different training recipe and are not the
paper's). The output is a pickle in
Detectron2's model-zoo layout: ``{"model": {name: ndarray}, "__author__": "torchvision",
"matching_heuristics": True}`` with Detectron2's ResNet names (``stem.conv1``, ``res2.0.conv1``,
``res2.0.conv1.norm``, ``res2.0.shortcut`` ...), which Detectron2's checkpointer matches to
``backbone.bottom_up.*`` of any of our models; the classifier (``fc``) is left out. The ``*_tv.py``
configs expect the file at ``train.init_checkpoint`` (``torchvision_R_50.pkl`` in the working
directory unless overridden; docs/models.md, "The authors' backbone (torchvision R-50)").
"""

import argparse
import pickle
import re
from typing import Dict, Mapping

import numpy as np
import torch

__all__ = ["convert_torchvision_resnet", "convert_file"]

# torchvision name -> Detectron2 name, by the part that differs; the parameter suffix is kept.
_STEM = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm"}
_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(\w+)$")
_STEM_PARAM = re.compile(r"(conv1|bn1)\.(\w+)$")


def _block_part(part: str) -> str:
    """Detectron2's name of one module of a torchvision bottleneck block."""
    if part.startswith("conv"):
        return part
    if part.startswith("bn"):
        return f"conv{part[2:]}.norm"
    return "shortcut" if part == "downsample.0" else "shortcut.norm"


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """Rename a torchvision ResNet state dict to Detectron2's ResNet names.

    Args:
        state_dict: torchvision ``ResNet.state_dict()`` (``conv1.weight``, ``bn1.*``,
            ``layer{1-4}.{block}.{conv,bn}{k}.*``, ``layer{i}.0.downsample.{0,1}.*``, ``fc.*``).

    Returns:
        ``{detectron2_name: ndarray}`` (float32; the BN batch counters int64): ``layer{i}`` becomes
        ``res{i+1}``, ``bn{k}`` becomes ``conv{k}.norm``, ``downsample.0`` / ``.1`` become
        ``shortcut`` / ``shortcut.norm``; the classifier ``fc`` is dropped. Values are unchanged.

    Raises:
        ValueError: for a name that is not part of a torchvision ResNet.
    """
    converted = {}
    for name, value in state_dict.items():
        if name.startswith("fc."):
            continue
        block = _BLOCK.match(name)
        stem = _STEM_PARAM.match(name)
        if block:
            stage, index, part, param = block.groups()
            new = f"res{int(stage) + 1}.{index}.{_block_part(part)}.{param}"
        elif stem:
            new = f"{_STEM[stem.group(1)]}.{stem.group(2)}"
        else:
            raise ValueError(f"{name!r} is not a parameter of a torchvision ResNet")
        value = value.detach().cpu()
        converted[new] = (value.float() if value.is_floating_point() else value).numpy()
    return converted


def convert_file(input_path: str, output_path: str) -> Dict[str, np.ndarray]:
    """Read torchvision's ``.pth`` at ``input_path``, write the Detectron2 ``.pkl`` to
    ``output_path``; returns the converted ``{name: ndarray}``."""
    state_dict = torch.load(input_path, map_location="cpu", weights_only=True)
    if "state_dict" in state_dict:  # a training checkpoint rather than the published weights
        state_dict = state_dict["state_dict"]
    model = convert_torchvision_resnet(state_dict)
    with open(output_path, "wb") as f:
        pickle.dump({"model": model, "__author__": "torchvision", "matching_heuristics": True}, f)
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="torchvision ResNet state dict (.pth)")
    parser.add_argument("--output", required=True, help="Detectron2 weights to write (.pkl)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".pkl"):
        parser.error("--output must end in .pkl: Detectron2 reads model-zoo pickles by that suffix")
    model = convert_file(args.input, args.output)
    print(f"wrote {len(model)} tensors to {args.output}")


if __name__ == "__main__":
    main()
