# LVIS v1 instance segmentation as in the RS paper (Sec. 5) and Detectron2's LVIS recipe:
# repeat-factor sampling with threshold 0.001, each image ceil(r) times per epoch as in the authors'
# runs (dataloader.train.rounding=stochastic: Detectron2's rounding), multi-scale training (short
# side 640-800, step 32, max 1333) with horizontal flip, 800 px testing, 16 images per batch, up
# to 300 detections per image in evaluation. Images under $DETECTRON2_DATASETS/coco, annotations in
# $DETECTRON2_DATASETS/lvis (datasets/README.md).
#
# The training dicts are loaded once: build_repeat_factor_train_loader computes the repeat factors
# from the very list it loads from (Detectron2's "${dataloader.train.dataset}" recipe parses the
# LVIS json twice).
from detectron2.model_zoo import get_config

from rs_detectron2.data import build_repeat_factor_train_loader, get_training_dataset_dicts
from rs_detectron2.evaluation import build_evaluator

NUM_CLASSES = 1203

dataloader = get_config("common/data/coco.py").dataloader

dataloader.train._target_ = build_repeat_factor_train_loader
dataloader.train.dataset._target_ = get_training_dataset_dicts
dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.repeat_thresh = 0.001
dataloader.train.rounding = "ceil"
dataloader.train.seed = None  # one random seed shared by all workers; set it to reproduce draws
dataloader.train.mapper.augmentations[0].short_edge_length = (640, 672, 704, 736, 768, 800)
dataloader.train.total_batch_size = 16

dataloader.test.dataset.names = "lvis_v1_val"

dataloader.evaluator._target_ = build_evaluator
dataloader.evaluator.fast = True
dataloader.evaluator.max_dets_per_image = 300
