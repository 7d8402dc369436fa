# SGD of the RS paper's dense detectors (RS-ATSS, RS-PAA): optim.py's, with weight decay on the
# normalisation (GN) parameters too, as mmdetection applies it to every parameter (Detectron2's
# zoo optimiser exempts them: weight_decay_norm=0.0). LR 0.008 at 16 images.
from .optim import SGD

SGD.lr = 0.008
SGD.params.weight_decay_norm = None  # no override: the optimiser's weight_decay (1e-4)
