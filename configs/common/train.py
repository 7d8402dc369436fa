# Training options for train_net.py (Detectron2's lazyconfig conventions). The device is CUDA when
# one is visible at load time, else CPU; override with train.device=...
import torch

from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.device = "cuda" if torch.cuda.is_available() else "cpu"
train.max_iter = 90000
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
