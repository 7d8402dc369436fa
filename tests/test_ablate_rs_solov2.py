"""benchmarks/ablate_rs_solov2.py: each RS-SOLOv2 variant changes what it says and nothing else,
and each is selected by a command-line override as docs/benchmarks.md shows."""

import importlib.util
import os
import sys

import pytest
import torch

from detectron2.config import instantiate

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.model_zoo import get_config
from rs_detectron2.utils.testing import batch, build_tiny, train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "ablate_rs_solov2.py")


def load_module():
    spec = importlib.util.spec_from_file_location("ablate_rs_solov2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablate_rs_solov2"] = module  # as PYTHONPATH=benchmarks would make it importable
    spec.loader.exec_module(module)
    return module


ab = load_module()


def variant(target, ranking_loss=None):
    """The tiny RS-SOLOv2 with its class (and ranking loss) replaced by dotted names, as the
    command-line overrides do; weights seeded as ``build_tiny``'s."""
    cfg = get_config("quick_schedules/rs_solov2_tiny.py")
    cfg.model._target_ = f"ablate_rs_solov2.{target}"
    if ranking_loss:
        cfg.model.ranking_loss._target_ = f"ablate_rs_solov2.{ranking_loss}"
    torch.manual_seed(0)
    return instantiate(cfg.model).train()


@pytest.fixture(scope="module")
def rs_losses():
    losses, _ = train_step(build_tiny("rs_solov2_tiny.py"), batch(masks=True))
    return {k: v.detach() for k, v in losses.items()}


def test_logging_variant_is_rs_solov2_and_logs_the_plain_dice(rs_losses):
    losses, storage = train_step(variant("RSLoggingDice"), batch(masks=True))
    for key, value in rs_losses.items():
        torch.testing.assert_close(losses[key].detach(), value)
    dice = storage.history("solo/mask_dice").latest()
    assert 0.0 < dice < 1.0


def test_mask_loss_times_3(rs_losses):
    losses, _ = train_step(variant("RSMaskLossTimes3"), batch(masks=True))
    torch.testing.assert_close(losses["loss_solo_mask"].detach(), 3 * rs_losses["loss_solo_mask"])
    torch.testing.assert_close(losses["loss_solo_rank"].detach(), rs_losses["loss_solo_rank"])


def test_stock_mask_loss_with_the_rs_classifier(rs_losses):
    losses, storage = train_step(variant("RSClassifierStockMaskLoss"), batch(masks=True))
    torch.testing.assert_close(losses["loss_solo_rank"].detach(), rs_losses["loss_solo_rank"])
    torch.testing.assert_close(losses["loss_solo_sort"].detach(), rs_losses["loss_solo_sort"])
    mean_dice = storage.history("solo/mask_dice").latest()
    assert float(losses["loss_solo_mask"]) == pytest.approx(3 * mean_dice, rel=1e-5)
    # not the balanced loss (which equals rank + sort)
    balanced = rs_losses["loss_solo_rank"] + rs_losses["loss_solo_sort"]
    assert abs(float(losses["loss_solo_mask"]) - float(balanced)) > 1e-3


def test_binary_targets_rank_without_sorting(rs_losses):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, generator=g)
    targets = torch.zeros(500)
    targets[:40] = torch.rand(40, generator=g) * 0.9 + 0.05
    rank, sort = ab.RankSortBinaryTargets()(logits, targets)
    ref_rank, ref_sort = RankSortLoss()(logits, (targets > 0).float())
    torch.testing.assert_close((rank, sort), (ref_rank, ref_sort))
    _, soft_sort = RankSortLoss()(logits, targets)
    assert float(soft_sort) > float(sort) + 1e-3  # the Dice-like targets were there to sort by

    model = variant("RSClassifierStockMaskLoss", ranking_loss="RankSortBinaryTargets")
    assert isinstance(model.ranking_loss, ab.RankSortBinaryTargets)
    losses, _ = train_step(model, batch(masks=True))
    assert float(losses["loss_solo_sort"]) != pytest.approx(float(rs_losses["loss_solo_sort"]))
