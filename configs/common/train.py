# Training options for train_net.py (Detectron2's lazyconfig conventions). The device is CUDA when
# one is visible at load time, else CPU; override with train.device=...
import torch

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.device = "cuda" if torch.cuda.is_available() else "cpu"
train.max_iter = 90000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
# Random seed of every process (seed + rank); -1 draws a fresh one. With a fixed seed, --resume
# continues the data order and the random state exactly (rs_detectron2.engine.resume).
train.seed = -1
# Losses are logged as medians over this many iterations (Detectron2's window); 1 logs raw values.
train.log_window = 20
# Gradient clipping to a global L2 norm (rs_detectron2.engine.ClipGradNorm); None: no clipping,
# as in the paper.
train.clip_gradients = dict(max_norm=None, norm_type=2.0)
# Images per process of the recipe's ranking pool (the RS paper: 4 GPUs x 4 images, each GPU ranking
# its own 4); train_net.py warns at start when a ranking loss with pool="local" sees another number.
train.ranking_pool_images = 4
# A schedule counted in epochs (rs_detectron2.engine.EpochSchedule), turned into max_iter and the LR
# steps at start from the training set's size; the LVIS configs set one (12 epochs of the repeated
# set). None: train.max_iter and lr_multiplier as written.
train.epoch_schedule = None
