# The shapes dataset in LVIS format (rs_shapes_lvis_*) with the LVIS loader of lvis.py:
# repeat-factor sampling and LVIS evaluation (APr / APc / APf), images and batch as shapes.py.
# The threshold is scaled to 240 training images: LVIS's 0.001 would repeat nothing here (the
# rarest class is in 3 of 240 images, f = 0.0125); at 0.1 its images repeat sqrt(0.1 / 0.0125) =
# 2.8 times.
from .lvis import dataloader
from .shapes import NUM_CLASSES
from .shapes import dataloader as _shapes

dataloader.train.dataset.names = "rs_shapes_lvis_train"
dataloader.train.repeat_thresh = 0.1
dataloader.train.update(
    mapper=_shapes.train.mapper, total_batch_size=_shapes.train.total_batch_size, num_workers=0
)
dataloader.test.dataset.names = "rs_shapes_lvis_val"
dataloader.test.update(mapper=_shapes.test.mapper, num_workers=0)
