"""Tests of AP Loss and aLRP Loss (``rs_detectron2.losses.ap_loss`` / ``alrp_loss``) and their
head loss objects.

The fast losses are checked against the plain loops of ``rs_detectron2.utils.testing`` (written
from the math of Chen et al. 2019 and Oksuz et al. 2020), against hand-computed examples, and
against the invariants of the identity update; the aLRP self-balance against its definition.
"""

import pytest
import torch
import torch.multiprocessing as mp

from rs_detectron2.losses import (
    ALRPLoss,
    APLoss,
    RankingLoss,
    RankSortLoss,
    alrp_loss,
    ap_loss,
    giou_loss,
    weighted_mean,
)
from rs_detectron2.utils import testing
from rs_detectron2.utils.reference import reference_alrp_loss, reference_ap_loss
from rs_detectron2.utils.testing import host_reads

F64 = torch.float64
DELTAS = (1.0, 0.5, 0.1, 2.0)


def make_case(seed, n, num_pos, *, logits="normal", num_ign=0, far_negatives=False):
    """Seeded float64 (logits, targets, loc_errors). logits: "normal" (2 N(0, 1)) or "ties" (a grid
    of step 0.25: ties between positives, negatives, and pairs exactly delta apart). Positives get
    IoU-like targets in (0.1, 1] (the losses read them as binary); ``far_negatives`` puts every
    negative 10 below the lowest positive (none is relevant)."""
    g = torch.Generator().manual_seed(seed)
    if logits == "normal":
        s = 2 * torch.randn(n, generator=g, dtype=F64)
    else:
        s = torch.randint(-6, 7, (n,), generator=g).to(F64) / 4
    perm = torch.randperm(n, generator=g)
    y = torch.zeros(n, dtype=F64)
    y[perm[:num_pos]] = torch.rand(num_pos, generator=g, dtype=F64) * 0.9 + 0.1
    y[perm[num_pos : num_pos + num_ign]] = -1.0
    if far_negatives:
        s[y == 0] = s[y > 0].min() - 10 - torch.rand(int((y == 0).sum()), generator=g, dtype=F64)
    loc = torch.rand(num_pos, generator=g, dtype=F64)
    return s, y, loc


CASES = [
    # (seed, n, num_pos, kwargs)
    (0, 60, 7, {}),
    (1, 200, 25, {"num_ign": 9}),
    (2, 80, 12, {"logits": "ties", "num_ign": 5}),
    (3, 40, 30, {"logits": "ties"}),  # mostly positives, many tied
    (4, 50, 1, {}),  # single positive
    (5, 30, 6, {"far_negatives": True}),  # no relevant negative
    (6, 1, 1, {}),  # a single entry, a positive
    (7, 300, 40, {"num_ign": 20}),
]


def run_ap(s, y, delta, **kwargs):
    x = s.clone().requires_grad_(True)
    loss = ap_loss(x, y, delta, **kwargs)
    loss.backward()
    return loss.detach(), x.grad


def run_alrp(s, y, loc, delta, loc_scale=3.0, **kwargs):
    """Values and gradients of both components (loss_loc backpropagated with weight loc_scale,
    as the self-balance weight would)."""
    x = s.clone().requires_grad_(True)
    lx = loc.clone().requires_grad_(True)
    loss_cls, loss_loc = alrp_loss(x, y, lx, delta, **kwargs)
    (loss_cls + loc_scale * loss_loc).backward()
    return loss_cls.detach(), loss_loc.detach(), x.grad, lx.grad / loc_scale


def assert_close(a, b, rtol=1e-9, atol=1e-12):
    assert torch.allclose(a.to(F64), b.to(F64), rtol=rtol, atol=atol), (a, b)


# ----------------------------------------------------------------------------------------------
# Against the loop references


@pytest.mark.parametrize("seed,n,num_pos,kwargs", CASES)
@pytest.mark.parametrize("delta", DELTAS)
def test_ap_matches_loop_reference(seed, n, num_pos, kwargs, delta):
    s, y, _ = make_case(seed, n, num_pos, **kwargs)
    loss, grad = run_ap(s, y, delta)
    ref_loss, ref_grad = reference_ap_loss(s, y, delta)
    assert_close(loss, ref_loss)
    assert_close(grad, ref_grad)


@pytest.mark.parametrize("seed,n,num_pos,kwargs", CASES)
@pytest.mark.parametrize("delta", DELTAS)
def test_alrp_matches_loop_reference(seed, n, num_pos, kwargs, delta):
    s, y, loc = make_case(seed, n, num_pos, **kwargs)
    loss_cls, loss_loc, grad, grad_loc = run_alrp(s, y, loc, delta)
    ref_cls, ref_loc, ref_grad, ref_grad_loc = reference_alrp_loss(s, y, loc, delta)
    assert_close(loss_cls, ref_cls)
    assert_close(loss_loc, ref_loc)
    assert_close(grad, ref_grad)
    assert_close(grad_loc, ref_grad_loc)


@pytest.mark.parametrize("seed", range(12))
def test_random_sweep_matches_references(seed):
    g = torch.Generator().manual_seed(100 + seed)
    n = int(torch.randint(2, 400, (1,), generator=g))
    num_pos = int(torch.randint(1, n + 1, (1,), generator=g))
    kind = "ties" if seed % 2 else "normal"
    s, y, loc = make_case(seed, n, num_pos, logits=kind, num_ign=min(n - num_pos, seed))
    delta = float(torch.rand(1, generator=g)) * 2 + 0.05
    loss, grad = run_ap(s, y, delta)
    ref_loss, ref_grad = reference_ap_loss(s, y, delta)
    assert_close(loss, ref_loss)
    assert_close(grad, ref_grad)
    result = run_alrp(s, y, loc, delta)
    for got, ref in zip(result, reference_alrp_loss(s, y, loc, delta), strict=True):
        assert_close(got, ref)


@pytest.mark.parametrize("seed,n,num_pos,kwargs", CASES[:4])
def test_float32_matches_float64_reference(seed, n, num_pos, kwargs):
    s, y, loc = make_case(seed, n, num_pos, **kwargs)
    s32, y32, loc32 = s.float(), y.float(), loc.float()
    loss, grad = run_ap(s32, y32, 1.0)
    assert loss.dtype == grad.dtype == torch.float32
    ref_loss, ref_grad = reference_ap_loss(s32, y32, 1.0)  # float64 loop on the float32 values
    assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)
    assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    result = run_alrp(s32, y32, loc32, 1.0)
    assert all(t.dtype == torch.float32 for t in result)
    for got, ref in zip(result, reference_alrp_loss(s32, y32, loc32, 1.0), strict=True):
        assert_close(got, ref, rtol=1e-5, atol=1e-7)


def test_large_pool_matches_thresholded_reference():
    """Many negatives, most of them irrelevant: the thresholded loop (the authors') agrees."""
    g = torch.Generator().manual_seed(11)
    s = torch.randn(30_000, generator=g, dtype=F64) - 3
    y = torch.zeros_like(s)
    idx = torch.randperm(s.numel(), generator=g)[:60]
    y[idx] = 1.0
    s[idx] += 4
    loc = torch.rand(60, generator=g, dtype=F64)
    loss, grad = run_ap(s, y, 1.0)
    ref_loss, ref_grad = reference_ap_loss(s, y, 1.0, use_threshold=True)
    assert_close(loss, ref_loss)
    assert_close(grad, ref_grad)
    result = run_alrp(s, y, loc, 1.0)
    ref = reference_alrp_loss(s, y, loc, 1.0, use_threshold=True)
    for got, want in zip(result, ref, strict=True):
        assert_close(got, want)


# ----------------------------------------------------------------------------------------------
# Hand examples (delta = 1: H(x) = clip(x / 2 + 1/2, 0, 1))


def _hand_pool():
    """Positives a (logit 0) and b (3), one negative at 3.5, one ignored entry at 9."""
    s = torch.tensor([0.0, 3.0, 3.5, 9.0], dtype=F64)
    y = torch.tensor([1.0, 0.7, 0.0, -1.0], dtype=F64)
    return s, y


def test_ap_hand_example_interpolates_precision():
    # a: rank+ = 1 + H(3) = 2, NFP = H(3.5) = 1, prec 2/3. b: rank+ = 1, NFP = H(0.5) = 0.75,
    # prec 1/1.75 = 4/7 < 2/3, so b's interpolated precision is a's 2/3.
    s, y = _hand_pool()
    loss, grad = run_ap(s, y, 1.0)
    assert loss.item() == pytest.approx(1 / 3, rel=1e-12)
    # Positives: -(1 - 2/3) / 2 each; the negative: (1/2) [(1/3) 1/1 + (1/3) 0.75/0.75].
    expected = torch.tensor([-1 / 6, -1 / 6, 1 / 3, 0.0], dtype=F64)
    assert_close(grad, expected, rtol=1e-12)


def test_alrp_hand_example():
    s, y = _hand_pool()
    loc = torch.tensor([0.2, 0.6], dtype=F64)  # a, b
    loss_cls, loss_loc, grad, grad_loc = run_alrp(s, y, loc, 1.0)
    # rank(a) = 2 + 1 = 3, rank(b) = 1 + 0.75 = 1.75; loss_cls = mean(1/3, 0.75/1.75).
    assert loss_cls.item() == pytest.approx((1 / 3 + 0.75 / 1.75) / 2, rel=1e-12)
    # e(a) = (1 + H(3) 0.6) / 3, e(b) = (0.75 + H(-3) 0.2) / 1.75 = 3/7.
    e_a, e_b = 1.6 / 3, 0.75 / 1.75
    expected = [-e_a / 2, -e_b / 2, (e_a * 1 / 1 + e_b * 0.75 / 0.75) / 2, 0.0]
    assert_close(grad, torch.tensor(expected, dtype=F64), rtol=1e-12)
    # Descending logits: b then a. loss_loc = mean(0.6 / 1.75, 0.8 / 3).
    assert loss_loc.item() == pytest.approx((0.6 / 1.75 + 0.8 / 3) / 2, rel=1e-12)
    expected_loc = torch.tensor([(1 / 3) / 2, (1 / 1.75 + 1 / 3) / 2], dtype=F64)
    assert_close(grad_loc, expected_loc, rtol=1e-12)


def test_alrp_localisation_ties_follow_flat_order():
    """Tied positives: the earlier entry of the flat order counts as ranked higher, so it is in
    every cumulative sum of the others and gets the largest localisation gradient."""
    s = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=F64)
    y = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=F64)
    loc = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    _, loss_loc, _, grad_loc = run_alrp(s, y, loc, 1.0)
    # Equal ranks r = 1 + 2 * 0.5 + H(-1) = 2: loss_loc = (0.1 + 0.6 + 1.5) / 2 / 3.
    assert loss_loc.item() == pytest.approx(2.2 / 2 / 3, rel=1e-12)
    assert_close(grad_loc, torch.tensor([3.0, 2.0, 1.0], dtype=F64) / 2 / 3, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Invariants and semantics


@pytest.mark.parametrize("seed,n,num_pos,kwargs", CASES)
def test_balance_invariants(seed, n, num_pos, kwargs):
    s, y, loc = make_case(seed, n, num_pos, **kwargs)
    _, grad = run_ap(s, y, 1.0)
    _, _, grad_alrp, _ = run_alrp(s, y, loc, 1.0)
    for g in (grad, grad_alrp):
        assert (g[y > 0] <= 0).all() and (g[y == 0] >= 0).all()
        # sum over positives of |g| = sum over negatives of g (AP-Loss Sec. 3; aLRP Theorem 2)
        assert g[y > 0].abs().sum().item() == pytest.approx(g[y == 0].sum().item(), abs=1e-12)
        assert (g[y < 0] == 0).all()  # ignored entries


def test_loss_ranges_and_perfect_ranking():
    s, y, loc = make_case(3, 100, 10)
    loss, _ = run_ap(s, y, 1.0)
    loss_cls, loss_loc, _, _ = run_alrp(s, y, loc, 1.0)
    assert 0 < loss.item() < 1 and 0 < loss_cls.item() < 1 and 0 < loss_loc.item() <= 1
    # Positives more than 2 delta above every negative: no error, no gradient.
    s = torch.where(y > 0, s + 20, s)
    loss, grad = run_ap(s, y, 1.0)
    loss_cls, _, grad_alrp, _ = run_alrp(s, y, loc, 1.0)
    assert loss.item() == 0 and loss_cls.item() == 0
    assert (grad == 0).all() and (grad_alrp == 0).all()


def test_alrp_zero_localisation_error_equals_ap_without_interpolation():
    """With l = 0 a positive's aLRP gradient is -NFP/rank/|P|: they sum to -loss_cls."""
    s, y, _ = make_case(1, 200, 25, num_ign=9)
    _, _, grad, _ = run_alrp(s, y, torch.zeros(25, dtype=F64), 1.0)
    loss_cls, _, _, _ = run_alrp(s, y, torch.zeros(25, dtype=F64), 1.0)
    assert (-grad[y > 0].sum()).item() == pytest.approx(loss_cls.item(), rel=1e-12)


def test_alrp_localisation_error_does_not_reach_loc_through_cls():
    s, y, loc = make_case(0, 60, 7)
    lx = loc.clone().requires_grad_(True)
    loss_cls, _ = alrp_loss(s.clone().requires_grad_(True), y, lx)
    loss_cls.backward()
    assert lx.grad is None or (lx.grad == 0).all()


def test_one_host_synchronisation_per_call():
    """Forward and backward of each loss read the device back once (.tolist() / .item() stand in
    for the synchronisation they cause on a GPU): the checks and counts of the ranking core."""
    s, y, loc = make_case(12, 3000, 80, num_ign=30)
    for run in (lambda: run_ap(s, y, 1.0), lambda: run_alrp(s, y, loc, 1.0)):
        with host_reads() as calls:
            run()
        assert calls == ["tolist"]


def test_inputs_not_modified_and_shapes_kept():
    s, y, loc = make_case(2, 80, 12, logits="ties", num_ign=5)
    logits = s.view(8, 10).clone().requires_grad_(True)
    targets = y.view(8, 10).clone()
    before = logits.detach().clone(), targets.clone(), loc.clone()
    ap_loss(logits, targets).backward()
    assert logits.grad.shape == (8, 10)
    alrp_loss(logits, targets, loc)[0].backward()
    for a, b in zip((logits.detach(), targets, loc), before, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_in_float32(dtype):
    s, y, loc = make_case(0, 60, 7)
    s = s.to(dtype)
    x = s.clone().requires_grad_(True)
    loss = ap_loss(x, y.to(dtype))
    loss.backward()
    ref, _ = reference_ap_loss(s.float(), y, 1.0)
    assert loss.dtype == torch.float32 and x.grad.dtype == dtype
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    loss_cls, loss_loc = alrp_loss(s, y.to(dtype), loc.to(dtype))
    assert loss_cls.dtype == loss_loc.dtype == torch.float32


def test_autocast_region_gives_float32_results():
    s, y, loc = make_case(1, 200, 25, num_ign=9)
    s32, loc32 = s.float(), loc.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ap_loss(s32, y)
        loss_cls, loss_loc = alrp_loss(s32, y, loc32)
    assert loss.dtype == loss_cls.dtype == loss_loc.dtype == torch.float32
    assert loss.item() == pytest.approx(ap_loss(s32, y).item(), rel=1e-7)
    assert loss_loc.item() == pytest.approx(alrp_loss(s32, y, loc32)[1].item(), rel=1e-7)


@pytest.mark.parametrize("targets", ["negatives", "ignored", "empty"])
def test_no_positives_gives_zeros_in_the_graph(targets):
    if targets == "empty":
        s, y = torch.zeros(0, dtype=F64), torch.zeros(0, dtype=F64)
    else:
        s = torch.randn(20, dtype=F64)
        y = torch.zeros(20, dtype=F64) if targets == "negatives" else -torch.ones(20, dtype=F64)
    x = s.clone().requires_grad_(True)
    loss = ap_loss(x, y)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert x.grad is not None and (x.grad == 0).all()
    x.grad = None
    loc = torch.zeros(0, dtype=F64, requires_grad=True)
    loss_cls, loss_loc = alrp_loss(x, y, loc)
    assert loss_cls.item() == 0 and loss_loc.item() == 0
    assert loss_cls.requires_grad and loss_loc.requires_grad
    (loss_cls + loss_loc).backward()
    assert (x.grad == 0).all() and loc.grad is not None and loc.grad.numel() == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_raise(bad):
    s, y, loc = make_case(0, 60, 7)
    s[5] = bad
    with pytest.raises(FloatingPointError, match="ap_loss: 1 of 60 logits are not finite"):
        ap_loss(s, y)
    with pytest.raises(FloatingPointError, match="alrp_loss: 1 of 60 logits are not finite"):
        alrp_loss(s, y, loc)


def test_bad_inputs_raise():
    s, y, loc = make_case(0, 60, 7)
    with pytest.raises(FloatingPointError, match="loc_errors"):
        alrp_loss(s, y, torch.where(loc > 0.5, float("nan"), loc))
    with pytest.raises(ValueError, match="7 positives"):
        alrp_loss(s, y, loc[:-1])
    with pytest.raises(TypeError):
        alrp_loss(s, y, torch.ones(7, dtype=torch.long))
    bad_y = y.clone()
    bad_y[0] = 1.5
    for fn in (lambda t: ap_loss(s, t), lambda t: alrp_loss(s, t, loc)):
        with pytest.raises(ValueError, match="above 1"):
            fn(bad_y)
        with pytest.raises(ValueError, match="same shape"):
            fn(y[:-1])
    for delta in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="delta"):
            ap_loss(s, y, delta)
        with pytest.raises(ValueError, match="delta"):
            alrp_loss(s, y, loc, delta)
    with pytest.raises(ValueError, match="pool"):
        ap_loss(s, y, pool="world")
    with pytest.raises(TypeError):
        ap_loss(s.long(), y)


# ----------------------------------------------------------------------------------------------
# The global pool across processes (Gloo on CPU)


def test_global_pool_two_processes_equals_one_process(tmp_path):
    s, y, loc = make_case(9, 90, 20, num_ign=6)
    y[:30] = y[:30].clamp(max=0)  # rank 0's slice holds no positive
    loc = loc[: int((y > 0).sum())]
    bounds = [0, 30, 90]
    init_file = str(tmp_path / "dist_init")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = (2, init_file, str(out_dir), s, y, loc, bounds, 1.0)
    mp.spawn(testing.ranking_family_global_pool_worker, args=args, nprocs=2, join=True)
    results = [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]

    ref_ap, ref_grad_ap = run_ap(s, y, 1.0)
    ref_cls, ref_loc, ref_grad, ref_grad_loc = run_alrp(s, y, loc, 1.0, loc_scale=1.0)
    num_before = [int((y[: bounds[r]] > 0).sum()) for r in range(3)]
    assert results[0]["grad_ap"].abs().sum() > 0  # its negatives see rank 1's positives
    for r, res in enumerate(results):
        lo, hi = bounds[r], bounds[r + 1]
        assert_close(res["ap"], ref_ap, rtol=1e-12)
        assert_close(res["cls"], ref_cls, rtol=1e-12)
        assert_close(res["loc"], ref_loc, rtol=1e-12)
        # each process holds world_size x its slice of the global gradients (DDP averages)
        assert_close(res["grad_ap"] / 2, ref_grad_ap[lo:hi], rtol=1e-10)
        assert_close(res["grad_cls"] / 2, ref_grad[lo:hi], rtol=1e-10)
        own = slice(num_before[r], num_before[r + 1])
        assert_close(res["grad_loc"] / 2, ref_grad_loc[own], rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# The head loss objects


def _head_inputs(seed, num_pos=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(20, 4, generator=g).requires_grad_(True)
    targets = torch.zeros(20, 4)
    targets.view(-1)[torch.randperm(80, generator=g)[:num_pos]] = 0.8
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]]).repeat(num_pos, 1)
    pred = (gt + 8 * torch.randn(num_pos, 4, generator=g)).requires_grad_(True)
    weights = torch.rand(num_pos, generator=g)
    return logits, targets, pred, gt, weights


def test_losses_are_ranking_losses_with_scalars():
    for loss in (APLoss(), ALRPLoss(), RankSortLoss()):
        assert isinstance(loss, RankingLoss)
    assert RankSortLoss().scalars() == {} and APLoss().scalars() == {}
    assert ALRPLoss(init_weight=30.0).scalars()["alrp_weight"].item() == 30.0


def test_ap_head_losses():
    logits, targets, pred, gt, weights = _head_inputs(0)
    losses = APLoss(box_weight=2.0).head_losses(
        logits, targets, giou_loss(pred, gt), weights, prefix="loss_cls"
    )
    assert set(losses) == {"loss_cls_ap", "loss_cls_box"}
    assert losses["loss_cls_ap"].item() == pytest.approx(ap_loss(logits, targets).item())
    box = 2.0 * weighted_mean(giou_loss(pred, gt), weights)
    assert losses["loss_cls_box"].item() == pytest.approx(box.item(), rel=1e-6)
    sum(losses.values()).backward()
    assert logits.grad.abs().sum() > 0 and pred.grad.abs().sum() > 0
    aux = torch.tensor(0.3)
    assert APLoss(box_weight=2.0).balance_auxiliary(aux, losses).item() == pytest.approx(0.6)


def test_alrp_head_losses_and_balance():
    logits, targets, pred, gt, weights = _head_inputs(1)
    loss = ALRPLoss(tau=0.7, init_weight=50.0)
    losses = loss.head_losses(logits, targets, giou_loss(pred, gt), weights, prefix="loss_rpn")
    assert set(losses) == {"loss_rpn_alrp_cls", "loss_rpn_alrp_loc"}
    loc_errors = giou_loss(pred, gt) / (2 * (1 - 0.7))
    cls, loc = alrp_loss(logits, targets, loc_errors)
    assert losses["loss_rpn_alrp_cls"].item() == pytest.approx(cls.item(), rel=1e-6)
    assert losses["loss_rpn_alrp_loc"].item() == pytest.approx(50 * loc.item(), rel=1e-6)
    sum(losses.values()).backward()
    assert logits.grad.abs().sum() > 0 and pred.grad.abs().sum() > 0
    aux = torch.tensor(2.0, requires_grad=True)
    balanced = loss.balance_auxiliary(aux, losses)
    assert balanced.item() == pytest.approx(cls.item() + loc.item(), rel=1e-6)


def test_head_losses_name_the_head_on_non_finite_logits():
    logits, targets, pred, gt, weights = _head_inputs(2)
    bad = logits.detach().clone()
    bad[0, 0] = float("nan")
    for loss, key in ((APLoss(), "loss_x_ap"), (ALRPLoss(), "loss_x_alrp_cls")):
        with pytest.raises(FloatingPointError, match=key):
            loss.head_losses(bad, targets, giou_loss(pred, gt), weights, prefix="loss_x")


def _run_calls(loss, calls, start_seed=0):
    """``calls`` head_losses calls; returns the list of (loss_cls, loss_loc unweighted, w used)."""
    seen = []
    for i in range(calls):
        logits, targets, pred, gt, weights = _head_inputs(start_seed + i)
        out = loss.head_losses(logits, targets, giou_loss(pred, gt), weights, prefix="p")
        loc_errors = giou_loss(pred, gt) / (2 * (1 - loss.tau))
        cls, loc = alrp_loss(logits, targets, loc_errors)
        w = out["p_alrp_loc"].item() / loc.item()
        seen.append((cls.item(), loc.item(), w))
    return seen


def test_self_balance_updates_exactly_at_the_period():
    loss = ALRPLoss(period=3, init_weight=50.0)
    seen = _run_calls(loss, 2)
    assert [w for _, _, w in seen] == pytest.approx([50.0, 50.0])
    assert int(loss.count) == 2
    seen += _run_calls(loss, 1, start_seed=2)
    mean_cls = sum(c for c, _, _ in seen) / 3
    mean_loc = sum(v for _, v, _ in seen) / 3
    expected = (mean_cls + mean_loc) / mean_loc
    assert loss.balance_weight.item() == pytest.approx(expected, rel=1e-6)
    assert seen[-1][2] == pytest.approx(expected, rel=1e-5)  # the boundary call uses the new w
    assert int(loss.count) == 0 and loss.sum_cls.item() == 0 and loss.sum_loc.item() == 0
    assert loss.scalars()["alrp_weight"].item() == pytest.approx(expected, rel=1e-6)


def test_self_balance_eval_mode_does_not_update():
    loss = ALRPLoss(period=1, init_weight=50.0).eval()
    _run_calls(loss, 3)
    assert loss.balance_weight.item() == 50.0 and int(loss.count) == 0


def test_self_balance_survives_state_dict_round_trip():
    loss = ALRPLoss(period=2, init_weight=50.0)
    _run_calls(loss, 3)  # one update, then one call into the next period
    state = loss.state_dict()
    assert {"balance_weight", "sum_cls", "sum_loc", "count", "period"} <= set(state)
    restored = ALRPLoss(period=7330, init_weight=50.0)
    restored.load_state_dict(state)
    assert restored.balance_weight.item() == loss.balance_weight.item() != 50.0
    assert int(restored.count) == 1 and int(restored.period) == 2
    # Both continue identically: the restored one updates after one more call, like the original.
    _run_calls(loss, 1, start_seed=10)
    _run_calls(restored, 1, start_seed=10)
    assert restored.balance_weight.item() == pytest.approx(loss.balance_weight.item(), rel=1e-12)
    assert int(restored.count) == int(loss.count) == 0


def test_alrp_loss_object_arguments():
    with pytest.raises(ValueError, match="tau"):
        ALRPLoss(tau=1.0)
    with pytest.raises(ValueError, match="period"):
        ALRPLoss(period=0)
    with pytest.raises(ValueError, match="init_weight"):
        ALRPLoss(init_weight=0.0)
    with pytest.raises(ValueError, match="delta"):
        APLoss(delta=0.0)
