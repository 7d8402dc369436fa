"""The authors' backbone: torchvision's R-50 converted to Detectron2 names, run with BN statistics
frozen and affine trainable, gives torchvision's features; the *_tv configs use it."""

import glob
import os
import pickle

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import FrozenBatchNorm2d

from rs_detectron2.engine import AtomicCheckpointer
from rs_detectron2.model_zoo import convert_torchvision
from rs_detectron2.modeling.backbone import FrozenStatsBatchNorm2d

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TV_CONFIGS = sorted(
    os.path.relpath(p, os.path.join(REPO, "configs"))
    for p in glob.glob(os.path.join(REPO, "configs", "**", "*_tv.py"), recursive=True)
    if f"{os.sep}common{os.sep}" not in p
)


def load(name):
    return LazyConfig.load(os.path.join(REPO, "configs", name))


def random_resnet50(seed=0):
    """torchvision's ResNet-50 with random weights and random BN statistics and affine, so that a
    swapped or dropped BN tensor changes the features."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet50()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.0)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def torchvision_features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    out = {}
    for k, layer in enumerate((net.layer1, net.layer2, net.layer3, net.layer4), start=2):
        x = layer(x)
        out[f"res{k}"] = x
    return out


def test_tv_configs_cover_the_rs_models_of_the_paper():
    assert TV_CONFIGS == [
        "COCO-Detection/rs_atss_R_50_FPN_1x_tv.py",
        "COCO-Detection/rs_cascade_rcnn_R_50_FPN_1x_tv.py",
        "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x_tv.py",
        "COCO-Detection/rs_paa_R_50_FPN_1x_tv.py",
        "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_tv.py",
        "LVISv1-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_rfs_tv.py",
    ]


@pytest.mark.parametrize("name", TV_CONFIGS)
def test_tv_config_differs_from_its_msra_config_only_in_the_backbone(name):
    tv = load(name)
    msra = load(name.replace("_tv.py", ".py"))
    bottom_up = tv.model.backbone.bottom_up
    assert bottom_up.stem.norm is FrozenStatsBatchNorm2d
    assert bottom_up.stages.norm is FrozenStatsBatchNorm2d
    assert bottom_up.stages.stride_in_1x1 is False  # pytorch style: stride in the 3x3 conv
    assert bottom_up.freeze_at == 2
    assert list(tv.model.pixel_mean) == [123.675, 116.28, 103.53]
    assert list(tv.model.pixel_std) == [58.395, 57.12, 57.375]
    assert tv.model.input_format == "RGB"
    assert tv.dataloader.train.mapper.image_format == "RGB"
    assert tv.dataloader.test.mapper.image_format == "RGB"
    assert tv.train.init_checkpoint == "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
    assert tv.optimizer.params.weight_decay_norm is None
    assert msra.model.backbone.bottom_up.stem.norm == "FrozenBN"
    # everything else is the MSRA config's
    for key in (
        "model.backbone.bottom_up",
        "model.pixel_mean",
        "model.pixel_std",
        "model.input_format",
        "dataloader.train.mapper.image_format",
        "dataloader.test.mapper.image_format",
        "optimizer.params.weight_decay_norm",
        "train.init_checkpoint",
    ):
        OmegaConf.update(tv, key, OmegaConf.select(msra, key), merge=False)
    assert LazyConfig.to_py(tv) == LazyConfig.to_py(msra)


def test_frozen_stats_batch_norm_keeps_statistics_and_trains_affine():
    torch.manual_seed(0)
    bn = FrozenStatsBatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    x = torch.randn(2, 4, 5, 5) * 3 + 1
    y = bn.train()(x)
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    expected = (x - stats[0][:, None, None]) / torch.sqrt(stats[1][:, None, None] + bn.eps)
    torch.testing.assert_close(y, expected * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(bn.eval()(x), y)
    y.sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0
    assert bn.bias.grad is not None


def test_conversion_names_and_drops():
    net = random_resnet50()
    converted = convert_torchvision.convert_torchvision_resnet(net.state_dict())
    assert "stem.conv1.weight" in converted and "stem.conv1.norm.running_var" in converted
    assert "res2.0.conv1.norm.weight" in converted and "res5.2.conv3.weight" in converted
    assert "res2.0.shortcut.weight" in converted and "res4.0.shortcut.norm.bias" in converted
    assert not any(k.startswith("fc") for k in converted)
    src = net.state_dict()
    pairs = [
        ("res3.1.conv2.norm.running_mean", "layer2.1.bn2.running_mean"),
        ("res4.0.shortcut.weight", "layer3.0.downsample.0.weight"),
    ]
    for new, old in pairs:
        assert (converted[new] == src[old].numpy()).all()
    with pytest.raises(ValueError, match="not a parameter"):
        convert_torchvision.convert_torchvision_resnet({"layer1.0.se.weight": torch.zeros(1)})


@pytest.fixture(scope="module")
def converted_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tv")
    net = random_resnet50()
    pth = tmp / "resnet50-random.pth"
    torch.save(net.state_dict(), pth)
    out = tmp / "torchvision_R_50.pkl"
    convert_torchvision.main(["--input", str(pth), "--output", str(out)])
    return net, str(out)


def test_converted_file_is_in_detectron2_model_zoo_format(converted_checkpoint):
    _, path = converted_checkpoint
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == "torchvision" and data["matching_heuristics"] is True
    assert len(data["model"]) == 318  # 53 convs + 53 BNs x 5 tensors; fc dropped


@pytest.mark.parametrize(
    "name",
    [
        "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_tv.py",
        "COCO-Detection/rs_atss_R_50_FPN_1x_tv.py",
    ],
)
def test_converted_backbone_gives_torchvision_features(converted_checkpoint, name):
    net, path = converted_checkpoint
    cfg = load(name)
    cfg.model.backbone.bottom_up.out_features = ["res2", "res3", "res4", "res5"]
    model = instantiate(cfg.model)
    checkpointer = AtomicCheckpointer(model)
    checkpointer.load(path)
    missing = [k for k in checkpointer.last_incompatible.missing_keys if "bottom_up" in k]
    assert not missing, missing
    backbone = model.backbone.bottom_up
    # stem and res2 frozen as mmdet's frozen_stages=1; later BN affine trainable, statistics frozen
    assert isinstance(backbone.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(backbone.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert type(backbone.res3[0].conv1.norm) is FrozenStatsBatchNorm2d
    assert backbone.res3[0].conv1.norm.weight.requires_grad
    assert not backbone.res2[0].conv1.weight.requires_grad
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = torchvision_features(net, x)
        # training mode too: the statistics stay frozen
        for mode in (False, True):
            got = backbone.train(mode)(x)
            for k in ("res2", "res3", "res4", "res5"):
                torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-4)
