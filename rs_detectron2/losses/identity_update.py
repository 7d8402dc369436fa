"""The identity update as an autograd Function, shared by the ranking losses.

Ranking-based losses are not differentiable. The identity update (Chen et al., "Towards Accurate
One-Stage Object Detection with AP-Loss", CVPR 2019, its error-driven update; Oksuz et al.,
"A Ranking-based, Balanced Loss Function Unifying Classification and Localisation in Object
Detection", NeurIPS 2020, Sec. 3; Oksuz et al., "Rank & Sort Loss for Object Detection and Instance
Segmentation", ICCV 2021, Sec. 3) splits each positive's error into primary terms and computes
every logit's gradient from them in the forward pass; backward returns that gradient times the
upstream gradient. :func:`identity_update` does this for any exact computation: autocast off,
flat detached inputs, a local pool or the gathered global one (:mod:`rs_detectron2.losses.pool`),
this process's slice of the gradient, and an optional second input with a gradient of its own
(aLRP's localisation errors).
"""

from typing import Callable, NamedTuple, Optional, Tuple

import torch

from .pool import gather_flat, gather_pool, own_gradient, pool_group
from .ranking import autocast_off, flat_inputs

__all__ = ["ExactResult", "identity_update"]


class ExactResult(NamedTuple):
    """What an exact ranking computation returns for a flat pool of n entries."""

    losses: Tuple[torch.Tensor, ...]  # 0-dim values (any floating dtype, float64 in practice)
    grad: torch.Tensor  # (n,) the identity-update gradient of losses[0] w.r.t. the logits
    # (m,) the gradient of losses[-1] w.r.t. the extra input, None without one
    extra_grad: Optional[torch.Tensor] = None


class _IdentityUpdate(torch.autograd.Function):
    """See :func:`identity_update`; the leading arguments are not tensors."""

    @staticmethod
    def forward(ctx, exact, name, group, logits, targets, extra):
        with autocast_off(logits.device.type):
            s, y, out_dtype = flat_inputs(logits, targets, name)
            inputs = [] if extra is None else [extra.detach().reshape(-1)]
            if group is None:
                result = exact(s, y, *inputs)
                grad, extra_grad = result.grad, result.extra_grad
            else:
                s, y, sizes = gather_pool(s, y, group)
                if extra is not None:
                    inputs[0], extra_sizes = gather_flat(inputs[0], group)
                result = exact(s, y, *inputs)
                grad = own_gradient(result.grad, sizes, group)
                if extra is not None:
                    extra_grad = own_gradient(result.extra_grad, extra_sizes, group)
        dtypes = [out_dtype] * len(result.losses)
        saved = [grad.view(logits.shape)]
        if extra is not None:
            dtypes[-1] = torch.promote_types(extra.dtype, torch.float32)
            saved.append(extra_grad.to(extra.dtype).view(extra.shape))
        ctx.save_for_backward(*saved)
        losses = tuple(v.to(d) for v, d in zip(result.losses, dtypes, strict=True))
        # Every loss but the first (and the extra input's) is a value only.
        ctx.mark_non_differentiable(*losses[1 : len(losses) - (extra is not None)])
        return losses

    @staticmethod
    def backward(ctx, *grad_outputs):
        grad, *extra_grad = ctx.saved_tensors
        grad_extra = extra_grad[0] * grad_outputs[-1] if extra_grad else None
        return None, None, None, grad * grad_outputs[0], None, grad_extra


def identity_update(
    exact: Callable[..., ExactResult],
    logits: torch.Tensor,
    targets: torch.Tensor,
    extra: Optional[torch.Tensor] = None,
    *,
    name: str,
    pool: str = "local",
    group=None,
) -> Tuple[torch.Tensor, ...]:
    """Ranking losses whose gradient w.r.t. ``logits`` is the identity update of ``exact``.

    Args:
        exact: ``exact(s, y) -> ExactResult`` (``exact(s, y, e)`` with ``extra``) on flat detached
            inputs: ``s`` (n,) the logits promoted to at least float32, ``y`` (n,) the targets,
            ``e`` (m,) the extra input, each the concatenation over the processes of a global pool.
        logits: tensor of any shape, floating point.
        targets: tensor of the same shape.
        extra: optional tensor with a gradient of its own (e.g. (P,) aLRP localisation errors).
        name: the loss's name, for error messages.
        pool: ``"local"`` (this process's entries) or ``"global"`` (every process of ``group``:
            a collective, every process must call it).
        group: the process group of a global pool (None: every process).
    Returns:
        ``exact``'s losses as a tuple, in the logits' dtype promoted to at least float32 (the last
        one in ``extra``'s, with ``extra``). The first carries the identity-update gradient
        (``grad`` times its upstream gradient); with ``extra``, the last carries ``extra_grad``
        w.r.t. ``extra``; the others are values only. A global pool's gradients are this process's
        slices times the world size (DistributedDataParallel's averaging then gives the gradient
        of the global loss).
    """
    return _IdentityUpdate.apply(exact, name, pool_group(pool, group), logits, targets, extra)
