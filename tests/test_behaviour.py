"""Refactoring keeps behaviour: every tiny model (losses, gradients, detections) and every ranking
loss (values, gradients) computes what the tree computed when ``tests/data/behaviour.pt`` was
recorded (``python tests/data/record_behaviour.py``, at a3841ab, before the second house pass).

Weights come from :func:`named_init_` (a seed per parameter name), so the comparison holds for any
order in which a model creates its modules, as long as the parameter names stay.
"""

import os

import pytest
import torch

from rs_detectron2.utils.testing import loss_snapshot, model_snapshot

RECORD = torch.load(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "behaviour.pt"),
    weights_only=True,
)


def assert_same(now, then):
    assert sorted(now) == sorted(then), "the recorded and computed names differ"
    for key, value in then.items():
        # float64 sums may be reassociated by a refactor: allow a few ulps, not more.
        torch.testing.assert_close(
            now[key], value, rtol=1e-6, atol=1e-7, msg=lambda m, key=key: f"{key}: {m}"
        )


def test_ranking_losses_compute_the_recorded_values_and_gradients():
    assert_same(loss_snapshot(), RECORD["losses"])


@pytest.mark.parametrize("config_name", sorted(RECORD["models"]))
def test_tiny_model_computes_the_recorded_losses_and_detections(config_name):
    assert_same(model_snapshot(config_name), RECORD["models"][config_name])
