# COCO 2017 detection data as in the RS paper (mmdet recipe): single-scale 1333x800 training with
# horizontal flip, 800 px testing, 16 images per batch. (Detectron2's own default trains at
# multi-scale 640-800; the baselines here use this same single-scale data.)
# Training dicts go through rs_detectron2's sanitiser (degenerate boxes / polygons dropped, with
# counts); the evaluator follows the test set's metadata (COCO or LVIS), faster-coco-eval by default
# (dataloader.evaluator.fast=False: Detectron2's pycocotools / lvis-api evaluators).
from detectron2.model_zoo import get_config

from rs_detectron2.data import get_training_dataset_dicts
from rs_detectron2.evaluation import build_evaluator

# Images of train2017 that have annotations (Detectron2 drops the others): one epoch at 16 images
# per batch is ceil(117266 / 16) = 7330 iterations, the aLRP self-balance period of the authors.
TRAIN_IMAGES = 117266

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset._target_ = get_training_dataset_dicts
dataloader.train.mapper.augmentations[0].short_edge_length = (800,)
dataloader.train.total_batch_size = 16
dataloader.evaluator._target_ = build_evaluator
dataloader.evaluator.fast = True
