"""RS-SOLOv2's ``pairing`` switch: "paper" gives each positive its own Dice quality and score
weight; "released" pairs them as the authors' released code does (qualities and weights in raster
order (level, image, cell), Dice losses in grid order (level, image, object, cell)). The
qualities and weights are read where the ranking loss receives them (a recording RS loss)."""

import pytest
import torch

from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from rs_detectron2.losses import RankSortLoss
from rs_detectron2.model_zoo import get_config
from rs_detectron2.modeling.quality import MIN_POSITIVE_QUALITY
from rs_detectron2.modeling.solov2 import DICE_EPS, SOLOv2Targets, solov2_targets
from rs_detectron2.modeling.solov2.rs_solov2 import released_orders
from rs_detectron2.utils.testing import batch, build_tiny, make_image

SIZE = (128, 128)  # canvas of the hand-made images; mask features at 32 x 32


class Recorder(RankSortLoss):
    """RS that keeps what its last ``head_losses`` call received."""

    def head_losses(self, logits, targets, loc_losses, loc_weights, **kwargs):
        self.targets = targets.detach().clone()
        self.loc_losses = loc_losses.detach().clone()
        self.loc_weights = loc_weights.detach().clone()
        return super().head_losses(logits, targets, loc_losses, loc_weights, **kwargs)


@pytest.fixture(scope="module")
def models():
    """The tiny RS-SOLOv2 of each pairing (rs_solov2_tiny.py, rs_solov2_released_tiny.py), each
    with a recording RS loss."""
    out = {
        "paper": build_tiny("rs_solov2_tiny.py"),
        "released": build_tiny("rs_solov2_released_tiny.py"),
    }
    for pairing, model in out.items():
        assert model.pairing == pairing
        model.ranking_loss = Recorder()
    return out


def targets_of(model, images, sigma=1.0):
    """The grid targets of ``images`` (make_image dicts) on the model's grids."""
    return solov2_targets(
        [x["instances"] for x in images],
        SIZE,
        model.num_classes,
        model.num_grids,
        model.scale_ranges,
        sigma=sigma,
        first_come=True,
    )


def run_losses(model, logits, mask_logits, targets):
    with EventStorage(0):
        return model.losses(logits, mask_logits, targets)


def soft_dice(pred, target):
    """The Dice coefficient of the authors' code (the test's own arithmetic)."""
    return 2 * (pred * target).sum() / ((pred**2).sum() + (target**2).sum() + DICE_EPS)


def test_released_orders_by_hand():
    # grids (2, 1): level 0 is cells 0-3, level 1 cell 4; positives (image, cell, gt) sorted by
    # image then cell, as solov2_targets gives them
    pos = torch.tensor([[0, 0, 1], [0, 1, 1], [0, 3, 0], [0, 4, 0], [1, 2, 2], [1, 4, 3]])
    raster, grid = released_orders(pos[:, 0], pos[:, 1], pos[:, 2], [2, 1], 2, 4)
    # (level, image, cell): level 0 of image 0, of image 1, then level 1 of image 0, of image 1
    assert raster.tolist() == [0, 1, 2, 4, 3, 5]
    # (level, image, gt, cell): in level 0 of image 0, ground truth 0 comes before ground truth 1
    assert grid.tolist() == [2, 0, 1, 4, 3, 5]


def test_two_objects_on_one_level_swap_qualities_and_weights_when_released(models):
    """Object 0 lies bottom-right, object 1 top-left, both 12 px squares on level 0 only with 3 x 3
    positive cells each: in raster order object 1's cells come first, in grid order object 0's.
    Released: the k-th cell of each object gets the quality and the score weight of the k-th cell
    of the other object; paper: its own. The Dice losses are each positive's own under both."""
    boxes = [[96, 96, 108, 108], [8, 8, 20, 20]]  # sqrt area 12: level 0 ([1, 32]) only
    classes = [2, 5]
    image = make_image(*SIZE, boxes, classes, seed=0, masks=True)
    targets = targets_of(models["paper"], [image])
    cells = [targets.pos_cell[targets.pos_gt == g] for g in range(2)]
    # preconditions: 9 cells each, all on level 0, object 1's cells all before object 0's
    assert [len(c) for c in cells] == [9, 9]
    assert int(targets.pos_cell.max()) < models["paper"].num_grids[0] ** 2
    assert int(cells[1].max()) < int(cells[0].min())
    gt_small = torch.zeros(2, 32, 32)
    gt_small[0, 24:27, 24:27] = 1
    gt_small[1, 2:5, 2:5] = 1
    assert torch.equal(targets.gt_masks.float(), gt_small)

    # each positive predicts its own object's square, a little surer the later it comes, so
    # that every positive has a Dice of its own
    num_pos = len(targets.pos_cell)
    mask_logits = torch.full((num_pos, 32, 32), -3.0)
    for i, g in enumerate(targets.pos_gt.tolist()):
        mask_logits[i][gt_small[g].bool()] = -1.0 + 0.25 * i
    dice = torch.stack(
        [soft_dice(mask_logits[i].sigmoid(), gt_small[g]) for i, g in enumerate(targets.pos_gt)]
    )
    assert len(set(dice.tolist())) == num_pos  # all different
    torch.manual_seed(0)
    logits = torch.randn(1, sum(s * s for s in models["paper"].num_grids), 8)
    scores = logits.sigmoid().amax(dim=2)[0]

    losses = {p: run_losses(m, logits, mask_logits, targets) for p, m in models.items()}
    for pairing, model in models.items():
        rec = model.ranking_loss
        assert int((rec.targets > 0).sum()) == num_pos
        torch.testing.assert_close(rec.loc_losses, 1 - dice)  # own Dice losses under both
        for g in range(2):
            # released: the other object's positive of the same rank
            src = 1 - g if pairing == "released" else g
            for rank in range(9):
                own_cell, src_cell = int(cells[g][rank]), int(cells[src][rank])
                (src_index,) = torch.nonzero(targets.pos_cell == src_cell)[0].tolist()
                (own_index,) = torch.nonzero(targets.pos_cell == own_cell)[0].tolist()
                quality = rec.targets[0, own_cell, classes[g]]
                torch.testing.assert_close(quality, dice[src_index])
                torch.testing.assert_close(rec.loc_weights[own_index], scores[src_cell])
    assert not torch.equal(
        models["paper"].ranking_loss.targets, models["released"].ranking_loss.targets
    )
    assert float(losses["paper"]["loss_solo_sort"]) != float(losses["released"]["loss_solo_sort"])


def test_three_objects_of_different_sizes_shift_by_the_released_orders(models):
    """Hand-made targets, one image, level 0: object 1 owns cell 10, object 2 cells 100-102,
    object 0 cells 200-201. Raster order is positives 0..5 (cells 10, 100, 101, 102, 200, 201),
    grid order 4, 5, 0, 1, 2, 3 (object 0, then 1, then 2). Released: the k-th positive in raster
    order gets the quality of the k-th in grid order and the k-th Dice loss in grid order the
    weight of the k-th in raster order; neither re-pairing is its own inverse here."""
    model = models["released"]
    num_cells = sum(s * s for s in model.num_grids)
    cells = torch.tensor([10, 100, 101, 102, 200, 201])
    gts = torch.tensor([1, 2, 2, 2, 0, 0])
    labels = torch.full((1, num_cells), 8)
    labels[0, cells] = torch.tensor([3, 4, 4, 4, 6, 6])
    torch.manual_seed(3)
    gt_masks = torch.rand(3, 32, 32) > 0.5
    targets = SOLOv2Targets(labels, torch.zeros(6, dtype=torch.long), cells, gts, gt_masks)
    raster, grid = released_orders(targets.pos_img, cells, gts, model.num_grids, 1, 3)
    assert raster.tolist() == [0, 1, 2, 3, 4, 5] and grid.tolist() == [4, 5, 0, 1, 2, 3]
    logits = torch.randn(1, num_cells, 8)
    mask_logits = torch.randn(6, 32, 32)
    dice = torch.stack(
        [soft_dice(mask_logits[i].sigmoid(), gt_masks[g].float()) for i, g in enumerate(gts)]
    )
    scores = logits[0, cells].sigmoid().amax(dim=1)
    run_losses(model, logits, mask_logits, targets)
    rec = model.ranking_loss
    quality = rec.targets[0, cells, labels[0, cells]]
    torch.testing.assert_close(quality, dice[[4, 5, 0, 1, 2, 3]])
    torch.testing.assert_close(rec.loc_weights, scores[[2, 3, 4, 5, 0, 1]])
    torch.testing.assert_close(rec.loc_losses, 1 - dice)


def test_one_object_per_level_and_image_gives_the_same_losses(models):
    """Image 0: a 40 px object (levels 1 and 2) annotated before a 12 px one (level 0); image 1:
    a 12 px object (level 0). Raster order differs from the targets' (image, cell) order, but each
    (level, image) holds one object, so grid order is raster order: both pairings give the same
    targets, weights, losses and gradients."""
    images = [
        make_image(*SIZE, [[60, 50, 100, 90], [10, 10, 22, 22]], [1, 3], seed=0, masks=True),
        make_image(*SIZE, [[40, 80, 52, 92]], [6], seed=1, masks=True),
    ]
    model = models["paper"]
    targets = targets_of(model, images, sigma=0.5)
    raster, grid = released_orders(
        targets.pos_img, targets.pos_cell, targets.pos_gt, model.num_grids, 2, 3
    )
    assert torch.equal(raster, grid)
    assert not torch.equal(raster, torch.arange(len(raster)))  # the orders are not trivial
    torch.manual_seed(1)
    logits = torch.randn(2, sum(s * s for s in model.num_grids), 8)
    mask_logits = torch.randn(len(targets.pos_cell), 32, 32)

    results = {}
    for pairing, m in models.items():
        lg, mk = logits.clone().requires_grad_(), mask_logits.clone().requires_grad_()
        losses = run_losses(m, lg, mk, targets)
        sum(losses.values()).backward()
        rec = m.ranking_loss
        results[pairing] = (losses, lg.grad, mk.grad, rec.targets, rec.loc_weights)
    (paper, p_lg, p_mk, p_t, p_w), (released, r_lg, r_mk, r_t, r_w) = results.values()
    assert set(paper) == set(released)
    for key in paper:
        assert torch.equal(paper[key].detach(), released[key].detach()), key
    for a, b in ((p_lg, r_lg), (p_mk, r_mk), (p_t, r_t), (p_w, r_w)):
        assert torch.equal(a, b)


def test_paper_pairing_is_each_positives_own_quality_and_score(models):
    """The default ("paper", as before the switch): each positive's entry gets the clamped Dice
    of its own mask with its own ground truth and its Dice loss its own max-class score; rank and
    sort are RS of those targets (tests/test_behaviour.py pins the tiny model's values too)."""
    cfg = get_config("quick_schedules/rs_solov2_tiny.py")
    assert cfg.model.pairing == "paper"
    del cfg.model.pairing
    assert instantiate(cfg.model).pairing == "paper"  # the default

    model = models["paper"]
    images = [dict(x) for x in batch(masks=True)]
    targets = targets_of(model, images, sigma=model.center_sigma)
    torch.manual_seed(2)
    logits = torch.randn(len(images), sum(s * s for s in model.num_grids), 8)
    mask_logits = torch.randn(len(targets.pos_cell), 32, 32)
    losses = run_losses(model, logits, mask_logits, targets)

    expected = torch.zeros_like(logits)
    weights = torch.zeros(len(targets.pos_cell))
    for i, (img, cell, g) in enumerate(
        zip(targets.pos_img.tolist(), targets.pos_cell.tolist(), targets.pos_gt.tolist())
    ):
        dice = soft_dice(mask_logits[i].sigmoid(), targets.gt_masks[g].float())
        expected[img, cell, targets.labels[img, cell]] = dice.clamp(min=MIN_POSITIVE_QUALITY)
        weights[i] = logits[img, cell].sigmoid().max()
    rec = model.ranking_loss
    torch.testing.assert_close(rec.targets, expected)
    torch.testing.assert_close(rec.loc_weights, weights)
    rank, sort = RankSortLoss()(logits, expected)
    torch.testing.assert_close(losses["loss_solo_rank"], rank)
    torch.testing.assert_close(losses["loss_solo_sort"], sort)


def test_released_pairing_trains_under_autocast():
    """bfloat16 CPU autocast (standing in for CUDA float16): float32, finite losses and
    gradients."""
    model = build_tiny("rs_solov2_released_tiny.py")
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch(masks=True))
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("bad", ["raster", "Paper", None])
def test_unknown_pairing_is_an_error(bad):
    cfg = get_config("quick_schedules/rs_solov2_tiny.py")
    cfg.model.pairing = bad
    with pytest.raises(ValueError, match="'paper' or 'released'"):
        instantiate(cfg.model)
