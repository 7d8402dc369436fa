"""rs_detectron2.solver: gradient clipping by global norm."""

import math

import pytest
import torch

from detectron2.config import LazyCall as L
from detectron2.config import instantiate

from rs_detectron2.solver import clip_gradients, optimizer_with_gradient_clipping


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


def test_step_uses_gradients_clipped_to_max_norm():
    params, grads = _params_with_grads()
    before = [p.detach().clone() for p in params]
    norm = _global_norm(grads)
    max_norm = norm / 4
    opt = clip_gradients(torch.optim.SGD(params, lr=1.0), max_norm)
    assert isinstance(opt, torch.optim.SGD)
    opt.step()
    steps = [
        b - p.detach() for b, p in zip(before, params, strict=True)
    ]  # lr 1: the step is the used gradient
    assert _global_norm(steps) == pytest.approx(max_norm, rel=1e-5)
    assert float(opt.last_grad_norm) == pytest.approx(norm, rel=1e-5)
    for s, g in zip(steps, grads, strict=True):  # the direction is kept
        torch.testing.assert_close(s, g * (max_norm / norm), rtol=1e-4, atol=1e-6)


def test_gradients_below_max_norm_are_untouched():
    params, grads = _params_with_grads()
    opt = clip_gradients(torch.optim.SGD(params, lr=0.1), _global_norm(grads) * 2)
    opt.step()
    for p, g in zip(params, grads, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("max_norm", [None, math.inf])
def test_no_max_norm_leaves_steps_unchanged(max_norm):
    results = []
    for clip in (False, True):
        params, _ = _params_with_grads()
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
        if clip:
            opt = clip_gradients(opt, max_norm)
            assert type(opt) is torch.optim.SGD
        for _ in range(3):
            opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_max_norm_is_rejected():
    params, _ = _params_with_grads()
    with pytest.raises(ValueError):
        clip_gradients(torch.optim.SGD(params, lr=0.1), 0.0)


def test_closure_gradients_are_clipped():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = clip_gradients(torch.optim.SGD([w], lr=1.0), 1.0)

    def closure():
        opt.zero_grad()
        loss = 10 * (w * torch.tensor([3.0, 4.0])).sum()  # gradient (30, 40), norm 50
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(250.0)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.6, 4.0 - 0.8]))


def test_lazy_config_forms_and_state_dict():
    # L(clip_gradients)(optimizer=L(SGD)(...)) and the drop-in _target_ of an optimizer node.
    params, grads = _params_with_grads()
    cfg = L(clip_gradients)(optimizer=L(torch.optim.SGD)(params=params, lr=1.0), max_norm=1.0)
    opt = instantiate(cfg)
    opt.step()
    assert float(opt.last_grad_norm) == pytest.approx(_global_norm(grads), rel=1e-5)

    params, grads = _params_with_grads()
    node = L(torch.optim.SGD)(params=params, lr=1.0, momentum=0.9)
    node._target_ = optimizer_with_gradient_clipping
    node.max_norm = 1.0
    opt = instantiate(node)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    before = [p.detach().clone() for p in params]
    opt.step()
    assert _global_norm(
        [b - p.detach() for b, p in zip(before, params, strict=True)]
    ) == pytest.approx(1.0, rel=1e-5)
    # Checkpoints hold the plain SGD state and load into a plain SGD.
    plain = torch.optim.SGD(params, lr=1.0, momentum=0.9)
    plain.load_state_dict(opt.state_dict())


# ClipGradNorm: the same global-norm clipping as a Detectron2 trainer hook (after_backward).


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
    import itertools

    from detectron2.engine import SimpleTrainer

    from rs_detectron2.engine import ClipGradNorm

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
    from rs_detectron2.engine import ClipGradNorm

    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="max_norm"):
            ClipGradNorm(bad)
