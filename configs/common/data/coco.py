# COCO 2017 detection data as in the RS paper (mmdet recipe): single-scale 1333x800 training with
# horizontal flip, 800 px testing, 16 images per batch. (Detectron2's own default trains at
# multi-scale 640-800; the baselines here use this same single-scale data.)
from detectron2.model_zoo import get_config

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations[0].short_edge_length = (800,)
dataloader.train.total_batch_size = 16
