"""The AP Loss and aLRP Loss configs end to end through train_net.py on CPU (tiny models, shapes
data): finite classification losses that go down, an evaluation, and aLRP's self-balance weight
kept across a kill-and-resume. The tiny AP / aLRP ATSS configs take the tiny AP / aLRP RetinaNet
recipes (their loss and clipping) on the same detector class; AP and aLRP on the RetinaNet head are
trained in test_every_head_every_loss.py."""

import os

import pytest
import torch

from rs_detectron2.utils.testing import read_metrics, run_train_net

ITERS = 40
LOG_PERIOD = 5


@pytest.mark.parametrize(
    "config, cls_keys, other_keys",
    [
        ("ap_atss_tiny.py", ["loss_dense_ap"], ["loss_dense_box"]),
        ("alrp_atss_tiny.py", ["loss_dense_alrp_cls"], ["loss_dense_alrp_loc"]),
        (
            "alrp_faster_rcnn_tiny.py",
            ["loss_rpn_alrp_cls", "loss_rcnn_alrp_cls"],
            ["loss_rpn_alrp_loc", "loss_rcnn_alrp_loc"],
        ),
    ],
)
def test_tiny_ranking_loss_model_trains_and_evaluates(tmp_path, config, cls_keys, other_keys):
    out = str(tmp_path / "out")
    run_train_net(
        f"configs/quick_schedules/{config}",
        out,
        f"train.max_iter={ITERS}",
        f"train.eval_period={ITERS}",
        f"train.log_period={LOG_PERIOD}",
        f"train.checkpointer.period={ITERS}",
        "train.seed=0",
    )
    records = read_metrics(out)
    train = [r for r in records if "total_loss" in r]
    assert len(train) >= ITERS // LOG_PERIOD - 1
    for r in train:
        for k in cls_keys + other_keys:
            assert k in r and r[k] == r[k] and abs(r[k]) < 1e6, (k, r)
    # The classification (ranking) terms fall; aLRP's localisation term may rise at first, when
    # the self-balance weight grows (the aLRP authors note the same).
    for k in cls_keys:
        first = sum(r[k] for r in train[:2]) / 2
        last = sum(r[k] for r in train[-2:]) / 2
        assert last < first, (k, [r[k] for r in train])
    if "alrp" in config:
        weights = [v for r in train for k, v in r.items() if k.endswith("/alrp_weight")]
        assert weights and all(v > 0 for v in weights)
    evaluation = [r for r in records if "bbox/AP" in r]
    assert evaluation and 0.0 <= evaluation[-1]["bbox/AP"] <= 100.0


def _balance_weight(checkpoint):
    state = torch.load(checkpoint, weights_only=False)["model"]
    return float(state["ranking_loss.balance_weight"]), int(state["ranking_loss.count"])


def test_alrp_self_balance_weight_survives_kill_and_resume(tmp_path):
    """With a 3-iteration period the weight changes during the run; a run stopped at iteration 8
    (two calls into a period) and resumed to 12 ends with exactly the weight of the uninterrupted
    run, which needs the period's partial sums from the checkpoint."""
    common = [
        "model.ranking_loss.period=3",
        # a constant LR, so that runs of 8 and 12 iterations agree on their first 8
        "lr_multiplier.warmup_length=0",
        "lr_multiplier.scheduler.values=[1.0,1.0]",
        "train.eval_period=0",
        "train.log_period=4",
        "train.checkpointer.period=8",
        "train.seed=1",
    ]
    config = "configs/quick_schedules/alrp_atss_tiny.py"
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    run_train_net(config, whole, "train.max_iter=12", *common)
    run_train_net(config, part, "train.max_iter=8", *common)
    at_8 = _balance_weight(os.path.join(part, "model_final.pth"))
    assert at_8[1] == 2 and at_8[0] != 50.0  # updated at calls 3 and 6, two calls since
    run_train_net(config, part, "train.max_iter=12", *common, flags=["--resume"])
    resumed = _balance_weight(os.path.join(part, "model_final.pth"))
    expected = _balance_weight(os.path.join(whole, "model_final.pth"))
    assert resumed[1] == expected[1] == 0  # updated at call 12
    assert resumed[0] == pytest.approx(expected[0], rel=1e-6)
