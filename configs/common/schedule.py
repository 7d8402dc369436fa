# Learning-rate schedules. "1x" is the RS paper's, as the authors ran it (their mmdetection
# recipe): 12 epochs, LR x0.1 after epochs 8 and 11, linear warmup over 500 iterations from
# 0.001 x LR, the iterations derived from the epoch length and the batch
# (rs_detectron2.engine.schedule.EpochSchedule). COCO train2017 (117,266 images) at 16 per batch
# gives 87,950 iterations with the steps at 58,633 and 80,621. A COCO leaf config sets it with
#     train.max_iter, lr_multiplier = epochs_1x(TRAIN_IMAGES, dataloader.train.total_batch_size)
# and switches to Detectron2's own 1x (90k iterations, steps at 60k and 80k) with
#     train.max_iter, lr_multiplier = d2_90k()
# On LVIS an epoch is one pass over the repeated set, known only at start: repeated_epochs_1x().
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


def repeated_epochs_1x():
    """The authors' 1x on a repeat-factor-sampled set (the LVIS configs): 12 epochs of the repeated
    set (each image ceil(r) times). Its size is known once the dataset is loaded, so train_net.py
    sets ``train.max_iter`` and the LR steps from ``train.epoch_schedule`` at start and logs them.

    Returns ``(train.epoch_schedule, train.max_iter, lr_multiplier)``; the last two are
    :func:`d2_90k`, used as written when ``train.epoch_schedule=null`` (Detectron2's 1x; with
    ``dataloader.train.rounding=stochastic``, Detectron2's LVIS recipe)."""
    return (epoch_schedule_1x(), *d2_90k())


def epoch_multiplier(epochs, step_epochs, iters_per_epoch, warmup_iters=500, warmup_factor=0.001):
    """A schedule counted in epochs (the mmdet recipes): LR x0.1 at each of ``step_epochs``, linear
    warmup over ``warmup_iters`` from ``warmup_factor`` x LR. Returns the ``lr_multiplier`` config;
    the run's ``train.max_iter`` must be ``epochs * iters_per_epoch``."""
    total = epochs * iters_per_epoch
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(step_epochs) + 1)],
            milestones=[e * iters_per_epoch for e in step_epochs] + [total],
        ),
        warmup_length=warmup_iters / total,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )


def solov2_3x(iters_per_epoch):
    """SOLOv2's 3x (the authors' recipe): 36 epochs, LR x0.1 at epochs 27 and 33, linear warmup
    over 500 iterations from 0.01 x LR. Returns ``(train.max_iter, lr_multiplier)``."""
    return 36 * iters_per_epoch, epoch_multiplier(36, [27, 33], iters_per_epoch, warmup_factor=0.01)
