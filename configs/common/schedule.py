# "1x" = 90k iterations at 16 images, LR x0.1 at 60k and 80k, linear warmup over 500 iterations
# from 0.001 x LR (the RS paper's mmdet warmup; Detectron2's own is 1000 iterations).
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

MAX_ITER_1X = 90000

lr_multiplier_1x = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[60000, 80000, MAX_ITER_1X]
    ),
    warmup_length=500 / MAX_ITER_1X,
    warmup_method="linear",
    warmup_factor=0.001,
)


def epoch_multiplier(epochs, step_epochs, iters_per_epoch, warmup_iters=500):
    """A schedule counted in epochs (the mmdet recipes): LR x0.1 at each of ``step_epochs``, linear
    warmup over ``warmup_iters`` from 0.001 x LR. Returns the ``lr_multiplier`` config; the run's
    ``train.max_iter`` must be ``epochs * iters_per_epoch``."""
    total = epochs * iters_per_epoch
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(step_epochs) + 1)],
            milestones=[e * iters_per_epoch for e in step_epochs] + [total],
        ),
        warmup_length=warmup_iters / total,
        warmup_method="linear",
        warmup_factor=0.001,
    )
