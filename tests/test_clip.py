"""Gradient clipping by global norm: the ClipGradNorm trainer hook (rs_detectron2.engine)."""

import itertools
import math

import pytest
import torch

from detectron2.engine import SimpleTrainer

from rs_detectron2.engine import ClipGradNorm


def _params_with_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [
        torch.nn.Parameter(torch.randn(5, 3, generator=g)),
        torch.nn.Parameter(torch.randn(4, generator=g)),
    ]
    grads = [torch.randn(p.shape, generator=g) * 10 for p in params]
    for p, gr in zip(params, grads, strict=True):
        p.grad = gr.clone()
    return params, grads


def _global_norm(tensors):
    return math.sqrt(sum(float(t.pow(2).sum()) for t in tensors))


class _TwoLosses(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.a, self.b = params

    def forward(self, batch):
        g = torch.Generator().manual_seed(1)
        return {
            "loss_a": (self.a * torch.randn(self.a.shape, generator=g)).sum() * 10,
            "loss_b": (self.b * torch.randn(self.b.shape, generator=g)).sum() * 10,
        }


def _one_step(max_norm):
    """Parameters, gradients and the hook after one SimpleTrainer step (lr 1, plain SGD)."""
    params, _ = _params_with_grads()
    model = _TwoLosses(params)
    before = [p.detach().clone() for p in params]
    trainer = SimpleTrainer(model, itertools.repeat([{}]), torch.optim.SGD(params, lr=1.0))
    hook = ClipGradNorm(max_norm) if max_norm else None
    trainer.register_hooks([hook])
    trainer.train(0, 1)
    steps = [
        b - p.detach() for b, p in zip(before, params, strict=True)
    ]  # lr 1: the step is the gradient
    return steps, [p.grad.clone() for p in params], hook


def test_clip_hook_bounds_the_global_norm_and_keeps_the_direction():
    free, grads, _ = _one_step(None)
    norm = _global_norm(grads)
    steps, _, hook = _one_step(norm / 4)
    assert _global_norm(steps) == pytest.approx(norm / 4, rel=1e-5)
    assert float(hook.last_norm) == pytest.approx(norm, rel=1e-5)
    for s, f in zip(steps, free, strict=True):
        torch.testing.assert_close(s, f / 4, rtol=1e-4, atol=1e-6)
    # below the threshold nothing changes
    steps, _, _ = _one_step(norm * 2)
    for s, f in zip(steps, free, strict=True):
        torch.testing.assert_close(s, f, rtol=0, atol=0)


def test_clip_hook_rejects_bad_max_norm():
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="max_norm"):
            ClipGradNorm(bad)
