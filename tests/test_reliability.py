"""Nothing lost: non-finite losses stop training before the step, checkpoints stay good, a run
killed after a checkpoint resumes into exactly the iterations the uninterrupted run had, and several
processes (Gloo on CPU) train through train_net.py's launcher."""

import itertools
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from detectron2.engine import SimpleTrainer, hooks
from detectron2.utils.events import EventStorage

from rs_detectron2.data import SkippingSampler
from rs_detectron2.engine import (
    AtomicCheckpointer,
    FiniteLossGuard,
    NonFiniteLossError,
    existing_checkpoint,
)
from rs_detectron2.engine.resume import start_train_loader_at
from rs_detectron2.engine.startup_checks import StartError, check_device
from rs_detectron2.losses import RankSortLoss
from rs_detectron2.utils.testing import REPO, read_metrics, run_train_net, train_net_cmd

TINY_FASTER = "configs/quick_schedules/rs_faster_rcnn_tiny.py"


class _ScriptedLossModel(torch.nn.Module):
    """One weight; its losses turn bad at iteration ``bad_iter`` in the way ``how`` says."""

    def __init__(self, bad_iter, how):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4))
        self.bad_iter, self.how, self.calls = bad_iter, how, 0

    def forward(self, batch):
        it, self.calls = self.calls, self.calls + 1
        good = {"loss_a": (self.w**2).sum(), "loss_b": self.w.sum().abs()}
        if it != self.bad_iter:
            return good
        if self.how == "nan_loss":
            return dict(good, loss_b=self.w.sum() * float("nan"))
        # non-finite classifier logits reaching the RS loss
        logits = self.w.view(2, 2) * torch.tensor([[1.0, float("inf")], [1.0, 1.0]])
        targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        return RankSortLoss().head_losses(
            logits, targets, torch.zeros(1), torch.ones(1), prefix="loss_cls_head"
        )


@pytest.mark.parametrize(
    "how, expected", [("nan_loss", "loss_b=nan"), ("nan_logits", "loss_cls_head_rank")]
)
def test_non_finite_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, how, expected
):
    model = _ScriptedLossModel(bad_iter=5, how=how)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(FiniteLossGuard(model), itertools.repeat([{}]), optimizer)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=2)])
    with pytest.raises(NonFiniteLossError, match="iteration 5") as err:
        trainer.train(0, 10)
    assert expected in str(err.value)
    # the weights after iteration 4 (5 steps) are untouched by the bad iteration: finite
    assert torch.isfinite(model.w).all()
    w_after_5_steps = model.w.detach().clone()
    # the last checkpoint (after iteration 3) is complete and finite, and the tag names it
    last = existing_checkpoint(str(tmp_path))
    assert os.path.basename(last) == "model_0000003.pth"
    saved = torch.load(last, weights_only=False)["model"]["w"]
    assert torch.isfinite(saved).all()
    assert not torch.equal(saved, w_after_5_steps)  # two more good steps happened after it


def test_checkpointer_refuses_non_finite_weights(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteLossError, match="bias"):
        checkpointer.save("model_0000002")
    assert existing_checkpoint(str(tmp_path)).endswith("model_0000001.pth")
    assert not os.path.exists(tmp_path / "model_0000002.pth")


def test_guard_passes_finite_losses_and_eval_outputs_through():
    model = _ScriptedLossModel(bad_iter=-1, how="nan_loss")
    guard = FiniteLossGuard(model)
    with EventStorage(0):
        losses = guard([{}])
    assert set(losses) == {"loss_a", "loss_b"}
    guard.eval()
    model.bad_iter = model.calls  # eval outputs are not losses: never checked
    out = guard([{}])
    assert torch.isnan(out["loss_b"])


def test_skipping_sampler_drops_exactly_the_consumed_prefix():
    from detectron2.config import LazyCall as L
    from detectron2.config import instantiate
    from detectron2.data import build_detection_train_loader
    from detectron2.data.samplers import TrainingSampler

    base = list(itertools.islice(iter(TrainingSampler(10, seed=3)), 40))
    skipped = list(itertools.islice(iter(SkippingSampler(TrainingSampler(10, seed=3), 13)), 27))
    assert skipped == base[13:]

    def dataset():
        return [{"i": i, "width": 4, "height": 4} for i in range(10)]

    def node(**kw):
        return L(build_detection_train_loader)(
            dataset=L(dataset)(), mapper=lambda d: d, total_batch_size=2, **kw
        )

    def ids(loader, n):
        return [[d["i"] for d in batch] for batch in itertools.islice(iter(loader), n)]

    # the start is set in the config, before the loader is built: with the config's sampler and
    # with the TrainingSampler Detectron2 builds (its seed drawn from numpy, as in train_net)
    for sampler in (L(TrainingSampler)(size=10, seed=3), None):
        np.random.seed(0)
        full = ids(instantiate(node(sampler=sampler)), 6)
        cfg = node(sampler=sampler)
        np.random.seed(0)
        start_train_loader_at(cfg, 2 * 2)
        assert isinstance(cfg.sampler, SkippingSampler)
        assert ids(instantiate(cfg), 4) == full[2:]
        assert full[:2] != full[2:4]  # the skip is visible (not a constant stream)

    # builders with a `sampler_start` argument get it; others cannot resume
    def with_start(dataset, *, sampler_start=0, loader_seed=None):
        return sampler_start, loader_seed

    cfg = L(with_start)(dataset=[])
    start_train_loader_at(cfg, 6, loader_seed=9)
    assert instantiate(cfg) == (6, 9)
    with pytest.raises(ValueError, match="sampler_start"):
        start_train_loader_at(L(lambda dataset: None)(dataset=[]), 4)

    # starting the loader draws from the global torch RNG, unless it has its own generator
    for loader_seed, expect_untouched in ((None, False), (5, True)):
        cfg = node(sampler=L(TrainingSampler)(size=10, seed=3))
        start_train_loader_at(cfg, 0, loader_seed=loader_seed)
        lo = instantiate(cfg)
        torch.manual_seed(0)
        untouched = torch.rand(3)
        torch.manual_seed(0)
        next(iter(lo))
        assert torch.equal(torch.rand(3), untouched) == expect_untouched


def _losses_by_iteration(out):
    """The last logged record of every training iteration (a resumed run appends its own)."""
    found = {}
    for r in read_metrics(out):
        if "total_loss" in r:
            found[r["iteration"]] = r
    return found


def test_killed_run_resumes_into_the_same_losses(tmp_path):
    common = [
        "train.max_iter=16",
        "train.checkpointer.period=4",
        "train.log_period=1",
        "train.log_window=1",
        "train.eval_period=0",
        "train.seed=11",
        "dataloader.train.total_batch_size=2",
    ]
    # the uninterrupted reference
    ref = str(tmp_path / "ref")
    run_train_net(TINY_FASTER, ref, *common)
    # the same run, killed (SIGKILL, no clean-up) once its second checkpoint is on disk
    out = str(tmp_path / "killed")
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(
            train_net_cmd(TINY_FASTER, out, *common), cwd=REPO, stdout=log, stderr=log
        )
        second = os.path.join(out, "model_0000007.pth")
        deadline = time.time() + 600
        while not (existing_checkpoint(out) == second) and proc.poll() is None:
            assert time.time() < deadline, "no second checkpoint within 10 minutes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        "the run ended before it could be killed:\n" + log_path.read_text()[-3000:]
    )
    assert existing_checkpoint(out) == second
    # resume: iterations 8..15 must reproduce the uninterrupted run
    run_train_net(TINY_FASTER, out, *common, flags=["--resume"])

    expected = _losses_by_iteration(ref)
    got = _losses_by_iteration(out)
    assert sorted(expected) == list(range(16))
    loss_keys = [k for k in expected[15] if k.startswith("loss_") or k == "total_loss"]
    assert len(loss_keys) >= 7
    for it in range(8, 16):
        for k in loss_keys:
            assert got[it][k] == pytest.approx(expected[it][k], rel=1e-6, abs=1e-9), (it, k)
    final_ref = torch.load(os.path.join(ref, "model_final.pth"), weights_only=False)["model"]
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["model"]
    for k, v in final_ref.items():
        if torch.is_floating_point(v):
            torch.testing.assert_close(final[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_diverging_run_names_iteration_and_term_and_keeps_a_good_checkpoint(tmp_path):
    out = str(tmp_path / "out")
    proc = run_train_net(
        TINY_FASTER,
        out,
        "optimizer.lr=1e6",
        "train.max_iter=30",
        "train.checkpointer.period=1",
        "train.eval_period=0",
        "train.seed=1",
        "dataloader.train.total_batch_size=2",
        check=False,
    )
    assert proc.returncode != 0, "a learning rate of 1e6 did not diverge in 30 iterations"
    tail = proc.stderr[-4000:]
    assert "iteration" in tail and "Last good checkpoint" in tail, tail
    assert (
        "non-finite loss: loss_" in tail or "_rank: rank_sort_loss" in tail or "not saving" in tail
    ), tail
    last = existing_checkpoint(out)
    if last is not None:  # every checkpoint that was written is finite
        state = torch.load(last, weights_only=False)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_floating_point(v))


@pytest.mark.parametrize(
    "config, pool_keys, loss_keys",
    [
        (
            TINY_FASTER,
            [
                "model.proposal_generator.ranking_loss.pool",
                "model.roi_heads.box_predictor.ranking_loss.pool",
            ],
            ["loss_rpn_rank", "loss_rpn_sort", "loss_rcnn_rank", "loss_rcnn_box"],
        ),
        ("configs/quick_schedules/rs_mask_rcnn_tiny.py", [], ["loss_rcnn_rank", "loss_rcnn_mask"]),
        (
            "configs/quick_schedules/rs_cascade_rcnn_tiny.py",
            ["model.proposal_generator.ranking_loss.pool"],
            ["loss_rpn_rank", "loss_rcnn_rank_stage2", "loss_rcnn_box_stage2"],
        ),
        (
            "configs/quick_schedules/rs_retinanet_tiny.py",
            ["model.ranking_loss.pool"],
            ["loss_dense_rank"],
        ),
        ("configs/quick_schedules/rs_atss_tiny.py", [], ["loss_dense_rank", "loss_dense_box"]),
        (
            "configs/quick_schedules/rs_paa_tiny.py",
            ["model.ranking_loss.pool"],
            ["loss_dense_rank"],
        ),
        (
            "configs/quick_schedules/rs_fcos_tiny.py",
            ["model.ranking_loss.pool"],
            ["loss_dense_rank", "loss_dense_box"],
        ),
        (
            "configs/quick_schedules/rs_solov2_tiny.py",
            ["model.ranking_loss.pool"],
            ["loss_solo_rank", "loss_solo_sort", "loss_solo_mask"],
        ),
        (
            "configs/quick_schedules/rs_yolact_tiny.py",
            ["model.ranking_loss.pool"],
            ["loss_dense_rank", "loss_dense_box", "loss_dense_mask"],
        ),
    ],
)
def test_two_processes_train_every_rs_model(tmp_path, config, pool_keys, loss_keys):
    """train_net.py --num-gpus 2 on CPU: Detectron2's launcher starts 2 Gloo processes (DDP).
    Where ``pool_keys`` are given, those RS heads rank the global batch as one pool."""
    out = str(tmp_path / "out")
    run_train_net(
        config,
        out,
        "train.max_iter=6",
        "train.log_period=1",
        "train.eval_period=0",
        "train.checkpointer.period=6",
        "train.seed=2",
        "dataloader.train.total_batch_size=4",
        *[f"{key}=global" for key in pool_keys],
        flags=["--num-gpus", "2"],
    )
    records = [r for r in read_metrics(out) if "total_loss" in r]
    assert [r["iteration"] for r in records] == list(range(6))
    for r in records:
        for k in loss_keys:
            assert r[k] == r[k] and abs(r[k]) < 1e6, (k, r[k])
    assert os.path.exists(os.path.join(out, "model_final.pth"))


def test_amp_on_cpu_gives_a_clear_message():
    import argparse

    cfg = argparse.Namespace(
        train=argparse.Namespace(device="cpu", amp=argparse.Namespace(enabled=True))
    )
    with pytest.raises(StartError, match="needs a CUDA device"):
        check_device(cfg)


@pytest.mark.parametrize("config", [TINY_FASTER, "configs/quick_schedules/rs_mask_rcnn_tiny.py"])
def test_rs_losses_are_float32_and_finite_under_autocast(config):
    """Mixed precision: with a low-precision forward (bfloat16 CPU autocast standing in for CUDA
    float16) every RS loss comes out in float32, finite, and backpropagates finite gradients."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import Boxes, Instances

    cfg = LazyConfig.load(os.path.join(REPO, config))
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    g = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(2):
        inst = Instances((128, 160))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 150.0, 110.0]]))
        inst.gt_classes = torch.tensor([1, 4])
        if "mask" in config:
            from detectron2.structures import BitMasks

            masks = torch.zeros(2, 128, 160, dtype=torch.bool)
            masks[0, 12:70, 10:60] = True
            masks[1, 20:110, 70:150] = True
            inst.gt_masks = BitMasks(masks)
        image = torch.randint(0, 255, (3, 128, 160), generator=g, dtype=torch.uint8)
        batch.append({"image": image, "instances": inst, "height": 128, "width": 160})
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(batch)
    for k, v in losses.items():
        assert v.dtype == torch.float32, (k, v.dtype)
        assert torch.isfinite(v), (k, v)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
