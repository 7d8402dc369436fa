"""yacs: every RS model built from configs/yacs/ with add_rs_config is the LazyConfig's model (same
parameters, settings, detections and losses); the yacs defaults are the paper's."""

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import nn

from detectron2.config import get_cfg, instantiate
from detectron2.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    build_model,
)
from detectron2.modeling.box_regression import Box2BoxTransform, Box2BoxTransformLinear
from detectron2.utils.events import EventStorage

from rs_detectron2.config import add_rs_config, build_ranking_loss, ranking_loss_from_config
from rs_detectron2.losses import ALRPLoss, APLoss, RankSortLoss
from rs_detectron2.model_zoo import get_config
from rs_detectron2.modeling import (
    ASSIGNER_REGISTRY,
    DENSE_HEAD_REGISTRY,
    RANKING_LOSS_REGISTRY,
    RSRPN,
    FCOSAssigner,
    IoUAssigner,
    RSDenseDetector,
    RSMaskRCNNConvUpsampleHead,
    RSRetinaNet,
    RSStandardROIHeads,
    ScaledRetinaNetHead,
    build_fcos_resnet_fpn_backbone,
    build_rs_atss_resnet_fpn_backbone,
)
from rs_detectron2.utils.testing import batch, make_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YACS = os.path.join(REPO, "configs", "yacs")
# (model, tiny overlay)
MODELS = [
    ("rs_faster_rcnn", "tiny_two_stage"),
    ("rs_mask_rcnn", "tiny_two_stage"),
    ("rs_cascade_rcnn", "tiny_two_stage"),
    ("rs_retinanet", "tiny_one_stage"),
    ("rs_atss", "tiny_one_stage"),
    ("rs_paa", "tiny_one_stage"),
    ("rs_fcos", "tiny_one_stage"),
]


def yacs_cfg(name, overlay=None):
    cfg = add_rs_config(get_cfg())
    cfg.merge_from_file(os.path.join(YACS, f"{name}_R_50_FPN_1x.yaml"))
    if overlay:
        cfg.merge_from_file(os.path.join(YACS, "quick_schedules", f"{overlay}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def settings(model: nn.Module) -> dict:
    """Every plain setting of every submodule and of the objects they hold (matchers, box coders,
    assigners, anchor generators): ``{"module.attr[.field]": value}``."""

    def plain(value):
        """The value as a comparable Python value (sequences as lists; LazyConfig's are
        omegaconf lists), or None when it is not a plain setting."""
        if isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, Sequence):
            items = [plain(v) for v in value]
            return items if all(v is not None for v in items) else None
        if isinstance(value, Mapping):
            items = {k: plain(v) for k, v in value.items()}
            return items if all(v is not None for v in items.values()) else None
        return None

    out = {}
    for prefix, module in model.named_modules():
        for key, value in vars(module).items():
            if key.startswith("_") or key == "training":
                continue
            if plain(value) is not None:
                out[f"{prefix}.{key}"] = plain(value)
            elif hasattr(value, "__dict__") and not isinstance(value, (nn.Module, torch.Tensor)):
                for field, inner in vars(value).items():
                    if not field.startswith("_") and plain(inner) is not None:
                        out[f"{prefix}.{key}.{field}"] = plain(inner)
    return out


def calibrate(model):
    """Batch-norm statistics from one batch, so that scores do not saturate and differ."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.backbone(model.preprocess_image(batch()).tensor)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@pytest.mark.parametrize("name,overlay", MODELS)
def test_yacs_builds_the_lazyconfig_model(name, overlay):
    torch.manual_seed(0)
    lazy = instantiate(get_config(f"quick_schedules/{name}_tiny.py").model)
    calibrate(lazy)
    built = build_model(yacs_cfg(name, overlay))

    shapes = {k: tuple(v.shape) for k, v in lazy.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in built.state_dict().items()} == shapes
    assert [type(m).__name__ for m in built.modules()] == [type(m).__name__ for m in lazy.modules()]
    assert settings(built) == settings(lazy)
    built.load_state_dict(lazy.state_dict())

    # eval: the same detections on an image the batch-norm statistics did not come from
    lazy.eval(), built.eval()
    inputs = [make_image(96, 144, [], [], seed=7)]
    with torch.no_grad():
        expected, actual = lazy(inputs)[0]["instances"], built(inputs)[0]["instances"]
    assert len(expected) > 0
    assert expected.get_fields().keys() == actual.get_fields().keys()
    for key in expected.get_fields():
        a, b = expected.get(key), actual.get(key)
        assert torch.equal(getattr(a, "tensor", a), getattr(b, "tensor", b)), key

    # train: the same losses
    lazy.train(), built.train()
    losses = {}
    for which, model in (("lazy", lazy), ("yacs", built)):
        torch.manual_seed(1)  # the mask-RoI cap draws at random
        with EventStorage(0):
            losses[which] = {k: float(v) for k, v in model(batch(masks=True)).items()}
    assert losses["yacs"] == pytest.approx(losses["lazy"], rel=1e-5, abs=1e-7)
    assert any(k.endswith("_rank") for k in losses["yacs"])


def test_rs_classes_are_in_detectron2s_registries():
    # the dense detector under its name and its former one (the shipped YAMLs use the former)
    assert RSRetinaNet is RSDenseDetector
    assert META_ARCH_REGISTRY.get("RSDenseDetector") is RSDenseDetector
    assert META_ARCH_REGISTRY.get("RSRetinaNet") is RSDenseDetector
    assert BACKBONE_REGISTRY.get("build_rs_atss_resnet_fpn_backbone") is (
        build_rs_atss_resnet_fpn_backbone
    )
    assert BACKBONE_REGISTRY.get("build_fcos_resnet_fpn_backbone") is (
        build_fcos_resnet_fpn_backbone
    )
    assert PROPOSAL_GENERATOR_REGISTRY.get("RSRPN") is RSRPN
    assert ROI_HEADS_REGISTRY.get("RSStandardROIHeads") is RSStandardROIHeads
    assert ROI_HEADS_REGISTRY.get("RSCascadeROIHeads").__name__ == "RSCascadeROIHeads"
    assert ROI_MASK_HEAD_REGISTRY.get("RSMaskRCNNConvUpsampleHead") is RSMaskRCNNConvUpsampleHead


def test_defaults_are_the_papers():
    cfg = add_rs_config(get_cfg())
    rs = cfg.MODEL.RS
    assert rs.RPN.LOSS_WEIGHT == 0.2
    assert tuple(rs.BBOX_REG_WEIGHTS) == (10.0, 10.0, 5.0, 5.0)
    assert rs.ROI_HEADS.SCORE_THRESH_TEST == 0.4
    assert rs.ROI_HEADS.BATCH_SIZE_PER_IMAGE >= 1e9  # no sampling
    assert rs.RANKING_LOSS.NAME == "RS" and rs.RANKING_LOSS.POOL == "local"
    loss = ranking_loss_from_config(cfg)
    assert isinstance(loss, RankSortLoss) and loss.delta == 0.5


def test_rsrpn_from_a_stock_yacs_config_takes_the_rs_loss_weight():
    # Detectron2's MODEL.RPN.LOSS_WEIGHT is 1.0 and RPN's from_config makes it a dict per loss
    cfg = add_rs_config(get_cfg())
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RSRPN"
    cfg.MODEL.DEVICE = "cpu"
    rpn = build_model(cfg).proposal_generator
    assert isinstance(rpn, RSRPN)
    assert rpn.loss_weight == 0.2
    assert tuple(rpn.box2box_transform.weights) == (10.0, 10.0, 5.0, 5.0)
    assert rpn.anchor_matcher.min_low_quality_iou == 0.3


@pytest.mark.parametrize(
    "loss_name,cls,delta", [("RS", RankSortLoss, 0.5), ("AP", APLoss, 1.0), ("aLRP", ALRPLoss, 1.0)]
)
def test_ranking_loss_choice(loss_name, cls, delta):
    cfg = add_rs_config(get_cfg())
    cfg.MODEL.RS.RANKING_LOSS.NAME = loss_name
    loss = ranking_loss_from_config(cfg)
    assert type(loss) is cls and loss.delta == delta  # None: the loss's own delta
    cfg.MODEL.RS.RANKING_LOSS.DELTA = 0.25
    cfg.MODEL.RS.RANKING_LOSS.POOL = "global"
    loss = ranking_loss_from_config(cfg)
    assert loss.delta == 0.25 and loss.pool == "global"
    cfg.MODEL.RS.RANKING_LOSS.NAME = "focal"
    with pytest.raises(ValueError, match="RANKING_LOSS.NAME"):
        ranking_loss_from_config(cfg)


def test_an_unknown_dense_assigner_is_named():
    cfg = yacs_cfg("rs_retinanet", "tiny_one_stage")
    cfg.MODEL.RS.DENSE.ASSIGNER = "SimOTA"
    with pytest.raises(ValueError, match="MODEL.RS.DENSE.ASSIGNER"):
        build_model(cfg)


def test_the_rs_choices_are_registries_named_as_the_yacs_values():
    assert {name for name, _ in RANKING_LOSS_REGISTRY} == {"RS", "AP", "aLRP"}
    assert {name for name, _ in ASSIGNER_REGISTRY} == {"IoU", "ATSS", "PAA", "FCOS"}
    assert {name for name, _ in DENSE_HEAD_REGISTRY} == {"RetinaNetHead", "ScaledRetinaNetHead"}
    assert ranking_loss_from_config is build_ranking_loss  # its former name


def test_a_registered_assigner_is_chosen_by_config_alone():
    class CountingIoUAssigner(IoUAssigner):
        calls = 0

        def assign(self, *args):
            CountingIoUAssigner.calls += 1
            return super().assign(*args)

    name = "CountingIoU"
    if name not in ASSIGNER_REGISTRY:  # the registry is global: once per process

        def CountingIoU(cfg):  # the registry name is the function's
            return CountingIoUAssigner(cfg.MODEL.RETINANET.IOU_THRESHOLDS)

        ASSIGNER_REGISTRY.register(CountingIoU)
    cfg = yacs_cfg("rs_retinanet", "tiny_one_stage")
    cfg.MODEL.RS.DENSE.ASSIGNER = name
    model = build_model(cfg)
    assert type(model.assigner) is CountingIoUAssigner
    with EventStorage(0):
        model(batch())
    assert CountingIoUAssigner.calls > 0


def test_an_unknown_dense_head_is_named():
    cfg = yacs_cfg("rs_retinanet", "tiny_one_stage")
    cfg.MODEL.RS.DENSE.HEAD = "FCOSHead"
    with pytest.raises(ValueError, match=r"MODEL.RS.DENSE.HEAD must be one of \['RetinaNetHead'"):
        build_model(cfg)


def test_the_box_coder_is_chosen_by_name_and_defaults_to_the_rs_weights():
    cfg = yacs_cfg("rs_retinanet", "tiny_one_stage")
    assert cfg.MODEL.RS.DENSE.BOX_TRANSFORM == "Box2BoxTransform"
    coder = build_model(cfg).box2box_transform
    assert type(coder) is Box2BoxTransform and tuple(coder.weights) == (10.0, 10.0, 5.0, 5.0)
    cfg.MODEL.RS.DENSE.BOX_TRANSFORM = "Box2BoxTransformLinear"
    coder = build_model(cfg).box2box_transform
    assert type(coder) is Box2BoxTransformLinear and coder.normalize_by_size
    cfg.MODEL.RS.DENSE.BOX_TRANSFORM = "Linear"
    with pytest.raises(ValueError, match=r"MODEL.RS.DENSE.BOX_TRANSFORM must be one of"):
        build_model(cfg)


def test_the_fcos_assigner_takes_its_yacs_keys():
    cfg = yacs_cfg("rs_fcos", "tiny_one_stage")
    cfg.MODEL.RS.DENSE.FCOS_CENTER_SAMPLING_RADIUS = 2.5
    cfg.MODEL.RS.DENSE.FCOS_SIZE_RANGE = (2.0, 6.0)
    assigner = build_model(cfg).assigner
    assert type(assigner) is FCOSAssigner
    assert (assigner.center_sampling_radius, assigner.size_range) == (2.5, (2.0, 6.0))


def test_the_scaled_head_is_built_from_the_yacs_keys():
    cfg = yacs_cfg("rs_atss", "tiny_one_stage")
    head = build_model(cfg).head
    assert type(head) is ScaledRetinaNetHead and len(head.scales) == 5


def run_python(code: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_config_alone_registers_the_yacs_names():
    """``from rs_detectron2.config import add_rs_config`` is enough for ``build_model``: it imports
    rs_detectron2.modeling, which registers (a fresh interpreter, so nothing else imported it)."""
    run_python(
        "from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY\n"
        "from rs_detectron2.config import add_rs_config\n"
        "assert 'RSRetinaNet' in META_ARCH_REGISTRY\n"
        "assert 'build_rs_atss_resnet_fpn_backbone' in BACKBONE_REGISTRY\n"
    )


def test_modeling_never_imports_config():
    """The heads take their collaborators as arguments: no module of rs_detectron2.modeling
    imports rs_detectron2.config (config/ imports modeling/, never the other way round)."""
    import ast

    root = os.path.join(REPO, "rs_detectron2", "modeling")
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            depth = os.path.relpath(path, root).count(os.sep) + 2  # dots up to rs_detectron2/
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom):
                    absolute = node.level == 0 and (node.module or "").startswith(
                        "rs_detectron2.config"
                    )
                    relative = node.level == depth and (node.module or "").startswith("config")
                    if absolute or relative:
                        offenders.append(os.path.relpath(path, REPO))
                elif isinstance(node, ast.Import):
                    if any(a.name.startswith("rs_detectron2.config") for a in node.names):
                        offenders.append(os.path.relpath(path, REPO))
    assert offenders == []
