"""Any ranking loss trains any RS head by a config override alone: AP and aLRP each train every RS
model (RPN, R-CNN, Cascade, Mask R-CNN, RetinaNet, ATSS, PAA, FCOS, SOLOv2, YOLACT) through the
public config path (``get_config``, an override of every ``ranking_loss`` node, ``instantiate``).
RS, the configs' own loss, trains every one of them in test_train_e2e, test_reliability and the
rest."""

import pytest
import torch
from omegaconf import DictConfig, ListConfig

from detectron2.config import LazyCall as L
from detectron2.config import instantiate

from rs_detectron2.losses import ALRPLoss, APLoss
from rs_detectron2.model_zoo import get_config
from rs_detectron2.utils.testing import batch, train_step

MODELS = [
    "rs_faster_rcnn",
    "rs_mask_rcnn",
    "rs_cascade_rcnn",
    "rs_retinanet",
    "rs_atss",
    "rs_paa",
    "rs_fcos",
    "rs_solov2",
    "rs_yolact",
]
# Each loss and the key endings of one head's losses.
LOSSES = {
    "ap": (L(APLoss)(), ("_ap",)),
    "alrp": (L(ALRPLoss)(period=2), ("_alrp_cls", "_alrp_loc")),
}


def override_ranking_losses(node, loss) -> int:
    """Replace every ``ranking_loss`` entry below ``node`` by ``loss``; returns how many."""
    count = 0
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            if key == "ranking_loss":
                node[key] = loss
                count += 1
            else:
                count += override_ranking_losses(node[key], loss)
    elif isinstance(node, ListConfig):
        for item in node:
            count += override_ranking_losses(item, loss)
    return count


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("model_name", MODELS)
def test_ranking_loss_trains_the_head_by_config_override(model_name, loss_name):
    loss, endings = LOSSES[loss_name]
    cfg = get_config(f"quick_schedules/{model_name}_tiny.py")
    assert override_ranking_losses(cfg.model, loss) >= 1
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    ranking_losses = [m for m in model.modules() if isinstance(m, type(instantiate(loss)))]
    assert ranking_losses, "the override did not reach the model"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    inputs = batch(masks=True)
    for _ in range(2):  # a step, then losses of the stepped model
        optimizer.zero_grad()
        losses, _ = train_step(model, inputs)
        for key, value in losses.items():
            assert torch.isfinite(value), f"{key} = {value}"
        for ending in endings:
            assert any(k.endswith(ending) or ending + "_stage" in k for k in losses), (
                f"no loss ending in {ending}: {sorted(losses)}"
            )
        optimizer.step()
    # every ranking-loss term carried gradient to the classifier: the parameters moved
    moved = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(moved) > len(before) // 2, f"only {len(moved)} of {len(before)} parameters moved"
