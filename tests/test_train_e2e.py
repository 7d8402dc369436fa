"""A few training iterations of each tiny RS two-stage model through train_net.py, then evaluation.

These run the real CLI in a subprocess (as a user would), on the generated shapes dataset, on CPU.
"""

import os

import pytest

from rs_detectron2.utils.testing import read_metrics, run_train_net

ITERS = 40
LOG_PERIOD = 5


@pytest.mark.parametrize(
    "config, loss_prefixes, eval_keys",
    [
        ("configs/quick_schedules/rs_faster_rcnn_tiny.py", ["loss_rpn", "loss_rcnn"], ["bbox/AP"]),
        (
            "configs/quick_schedules/rs_mask_rcnn_tiny.py",
            ["loss_rpn", "loss_rcnn"],
            ["bbox/AP", "segm/AP"],
        ),
        (
            "configs/quick_schedules/rs_cascade_rcnn_tiny.py",
            ["loss_rpn"] + [f"loss_rcnn_{{}}_stage{k}" for k in range(3)],
            ["bbox/AP"],
        ),
        (  # LVIS-format data: repeat-factor sampling and LVIS evaluation (APr / APc / APf)
            "configs/quick_schedules/rs_mask_rcnn_lvis_tiny.py",
            ["loss_rpn", "loss_rcnn"],
            ["bbox/AP", "bbox/APr", "bbox/APc", "bbox/APf", "segm/AP", "segm/APr"],
        ),
    ],
)
def test_tiny_rs_model_trains_and_evaluates(tmp_path, config, loss_prefixes, eval_keys):
    out = str(tmp_path / "out")
    run_train_net(
        config,
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
    keys = set()
    for prefix in loss_prefixes:
        for part in ("rank", "sort", "box"):
            keys.add(prefix.format(part) if "{}" in prefix else f"{prefix}_{part}")
    for r in train:
        assert keys <= set(r), sorted(set(r))
        for k in keys:
            assert r[k] == r[k] and abs(r[k]) < 1e6, (k, r[k])  # finite
    first = sum(r["total_loss"] for r in train[:2]) / 2
    last = sum(r["total_loss"] for r in train[-2:]) / 2
    assert last < first, [r["total_loss"] for r in train]
    evaluation = [r for r in records if any(k in r for k in eval_keys)]
    assert evaluation, "no evaluation results in metrics.json"
    assert os.path.exists(os.path.join(out, "model_final.pth"))
    for key in eval_keys:
        value = evaluation[-1][key]
        assert 0.0 <= value <= 100.0, (key, value)
