# Learning-rate schedules. "1x" is the RS paper's (the authors' mmdetection recipe): 12 epochs, LR
# x0.1 after epochs 8 and 11, linear warmup over 500 iterations from 0.001 x LR, with the iterations
# derived from the epoch length and the batch (rs_detectron2.engine.schedule.EpochSchedule): at COCO
# train2017's 117,266 images and 16 per batch, 87,950 iterations with the steps at 58,633 and
# 80,621. Detectron2's own 1x (90k iterations, steps at 60k and 80k) is d2_90k().
import copy

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from rs_detectron2.engine.schedule import EpochSchedule


def epoch_schedule_1x():
    """The authors' 1x as a config node for ``train.epoch_schedule`` (an LVIS config's), resolved
    at start from the size of the repeated set (``rs_detectron2.engine.resolve_epoch_schedule``).
    A function, so that importing it does not add a top-level key to the importing config."""
    return L(EpochSchedule)(epochs=12, step_epochs=[8, 11], warmup_iters=500, warmup_factor=0.001)


MAX_ITER_1X = 90000

lr_multiplier_1x = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[60000, 80000, MAX_ITER_1X]
    ),
    warmup_length=500 / MAX_ITER_1X,
    warmup_method="linear",
    warmup_factor=0.001,
)


def epochs_1x(images_per_epoch, batch_size):
    """The authors' 1x for ``images_per_epoch`` images at ``batch_size`` per iteration: returns
    ``(train.max_iter, lr_multiplier)``."""
    schedule = EpochSchedule(epochs=12, step_epochs=(8, 11), warmup_iters=500, warmup_factor=0.001)
    return (
        schedule.max_iter(images_per_epoch, batch_size),
        schedule.lr_multiplier(images_per_epoch, batch_size),
    )


def d2_90k():
    """Detectron2's 1x: returns ``(train.max_iter, lr_multiplier)`` = 90k iterations, LR x0.1 at
    60k and 80k, with the same 500-iteration warmup from 0.001 x LR."""
    return MAX_ITER_1X, copy.deepcopy(lr_multiplier_1x)


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
