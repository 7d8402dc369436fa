# Optimiser, schedule and training options of the tiny CPU configs in quick_schedules/ (data:
# data/shapes.py; models: rs_detectron2.model_zoo.tiny): 300 iterations of batch 4.
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from .optim import SGD as optimizer
from .train import train

# Half Detectron2's 0.01, at which the from-scratch RS heads diverge.
optimizer.lr = 0.005

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[240, 300]),
    warmup_length=0.1,
    warmup_method="linear",
    warmup_factor=0.001,
)

train.max_iter = 300
train.init_checkpoint = ""
train.eval_period = 300
train.log_period = 20
train.checkpointer.period = 100
train.output_dir = "./output/tiny"
