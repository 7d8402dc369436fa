# SGD of the RS paper: momentum 0.9, weight decay 1e-4; the learning rate is the one tuned
# per detector at 16 images per batch (R-CNNs 0.012, dense detectors 0.008, stock R-CNNs 0.02).
from detectron2.model_zoo import get_config

SGD = get_config("common/optim.py").SGD
SGD.lr = 0.012
SGD.momentum = 0.9
SGD.weight_decay = 1e-4
