"""The data and schedule of the paper's recipes (the authors' mmdetection runs): LVIS repeat-factor
sampling with every image repeated ceil(r) times per epoch, "1x" as 12 epochs (of COCO, or of the
repeated LVIS set, resolved at start), and the start-up warning on the ranking pool's size."""

import copy
import importlib.util
import itertools
import logging
import math
import os
import uuid
from collections import Counter

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils import comm

from rs_detectron2.data import (
    SHAPES_CLASSES,
    build_repeat_factor_train_loader,
    generate_shapes,
    get_training_dataset_dicts,
    register_shapes,
    repeat_factor_sampler,
)
from rs_detectron2.data.samplers import RepeatFactorSampler
from rs_detectron2.engine.schedule import EpochSchedule, resolve_epoch_schedule
from rs_detectron2.engine.startup_checks import ConfigError, check_overrides, ranking_pool_warning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
LVIS_RS = os.path.join(CONFIGS, "LVISv1-InstanceSegmentation", "rs_mask_rcnn_R_50_FPN_1x_rfs.py")
COCO_RS = os.path.join(CONFIGS, "COCO-Detection", "rs_faster_rcnn_R_50_FPN_1x.py")

# repeat factors with whole, fractional and 1.0 values
FACTORS = torch.tensor([1.0, 1.0, 1.3, 2.0, 2.5, 3.9, 1.0, 1.05])
CEIL = [1, 1, 2, 2, 3, 4, 1, 2]


def epochs_of(stream, epoch_size, n):
    """The first ``n`` epochs of an index stream, as Counters of dataset indices."""
    return [Counter(itertools.islice(stream, epoch_size)) for _ in range(n)]


# ------------------------------------------------------------------------- repeat-factor rounding


def test_ceil_rounding_repeats_every_image_ceil_r_times_in_every_epoch():
    sampler = RepeatFactorSampler(FACTORS, seed=3)  # the default rounding
    assert sampler.rounding == "ceil" and sampler.epoch_size == sum(CEIL)
    stream = iter(sampler)
    epochs = [list(itertools.islice(stream, sum(CEIL))) for _ in range(6)]
    for epoch in epochs:
        assert Counter(epoch) == Counter(dict(enumerate(CEIL)))
    # shuffled anew each epoch
    assert len({tuple(e) for e in epochs}) == 6
    # unshuffled: the dataset order, each index ceil(r) times
    plain = list(itertools.islice(iter(RepeatFactorSampler(FACTORS, shuffle=False, seed=0)), 16))
    assert plain == [i for i, c in enumerate(CEIL) for _ in range(c)]


def test_stochastic_rounding_is_detectron2s_sampler():
    ours = RepeatFactorSampler(FACTORS, rounding="stochastic", seed=5)
    theirs = RepeatFactorTrainingSampler(FACTORS, seed=5)
    assert list(itertools.islice(iter(ours), 200)) == list(itertools.islice(iter(theirs), 200))
    assert ours.epoch_size == pytest.approx(float(FACTORS.sum()))
    # its first epoch (seed 5) rounds a fractional factor down: not the ceil multiset
    counts = epochs_of(
        iter(RepeatFactorSampler(FACTORS, rounding="stochastic", shuffle=False, seed=5)), 15, 1
    )
    assert counts[0] != Counter(dict(enumerate(CEIL)))
    with pytest.raises(ValueError, match="rounding"):
        RepeatFactorSampler(FACTORS, rounding="round")


def test_ceil_stream_is_sharded_over_processes_like_detectron2(monkeypatch):
    world = list(itertools.islice(iter(RepeatFactorSampler(FACTORS, seed=11)), 64))
    shards = []
    for rank in range(2):
        monkeypatch.setattr(comm, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(comm, "get_world_size", lambda: 2)
        shards.append(list(itertools.islice(iter(RepeatFactorSampler(FACTORS, seed=11)), 32)))
    assert shards[0] == world[0::2] and shards[1] == world[1::2]


def test_ceil_loader_resumes_exactly():
    dicts = [
        {"image_id": i, "width": 8, "height": 8, "annotations": [{"category_id": c}]}
        for i, c in enumerate([0, 0, 0, 0, 0, 0, 1, 2])
    ]

    def build(start):
        return build_repeat_factor_train_loader(
            dicts,
            mapper=lambda d: d["image_id"],
            total_batch_size=4,
            repeat_thresh=0.5,
            seed=2,
            aspect_ratio_grouping=False,
            sampler_start=start,
            loader_seed=0,
        )

    full = list(itertools.islice(iter(build(0)), 8))
    assert list(itertools.islice(iter(build(3 * 4)), 5)) == full[3:]
    # classes 1 and 2 are in 1 of 8 images: r = sqrt(0.5 / 0.125) = 2; class 0 is frequent, r = 1
    stream = [i for batch in full for i in batch]
    for epoch in (stream[:10], stream[10:20], stream[20:30]):
        assert Counter(epoch) == Counter({0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2})


# ------------------------------------------------------------------------------------ schedules


def test_coco_1x_is_twelve_epochs_of_train2017():
    cfg = LazyConfig.load(COCO_RS)
    s = EpochSchedule()
    assert s.max_iter(117266, 16) == cfg.train.max_iter == 87950
    assert s.milestones(117266, 16) == [58633, 80621, 87950]
    # the LR drops when epoch 8 (58,633 x 16 = 8 x 117,266 images) and epoch 11 are done
    multiplier = instantiate(cfg.lr_multiplier)
    lr = [multiplier(it / cfg.train.max_iter) for it in (0, 499, 600, 58632, 58633, 80620, 80621)]
    assert lr[0] == pytest.approx(0.001, rel=1e-3) and lr[1] < 1.0 and lr[2] == 1.0
    assert lr[3:] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    # Detectron2's 90k stays available
    spec = importlib.util.spec_from_file_location(
        "schedule_config", os.path.join(CONFIGS, "common", "schedule.py")
    )
    schedules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schedules)
    max_iter, lr_multiplier = schedules.d2_90k()
    assert max_iter == 90000 and list(lr_multiplier.scheduler.milestones) == [60000, 80000, 90000]
    # ... and from the command line (docs/models.md: "Differences from the authors' code")
    overrides = [
        "train.max_iter=90000",
        "lr_multiplier.scheduler.milestones=[60000,80000,90000]",
        f"lr_multiplier.warmup_length={500 / 90000}",
    ]
    check_overrides(cfg, overrides)
    cfg = LazyConfig.apply_overrides(cfg, overrides)
    ours, theirs = instantiate(cfg.lr_multiplier), instantiate(lr_multiplier)
    for it in (0, 250, 500, 59999, 60000, 79999, 80000, 89999):
        assert ours(it / 90000) == pytest.approx(theirs(it / 90000))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("parity_shapes"))
    paths = generate_shapes(root)
    register_shapes(root)
    return paths


def lvis_config(name, thresh=0.3):
    """The full RS-Mask R-CNN LVIS config on a shapes LVIS dataset (``thresh`` repeats the
    rare shapes of 240 images)."""
    cfg = LazyConfig.load(LVIS_RS)
    cfg.dataloader.train.dataset.names = name
    cfg.dataloader.train.repeat_thresh = thresh
    cfg.dataloader.train.num_workers = 0
    return cfg


def test_lvis_1x_is_twelve_epochs_of_the_ceil_repeated_set(shapes, caplog):
    base = DatasetCatalog.get("rs_shapes_lvis_train")
    calls, name = [], f"count_lvis_{uuid.uuid4().hex[:8]}"

    def load():
        calls.append(1)
        return copy.deepcopy(base)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(thing_classes=list(SHAPES_CLASSES), evaluator_type="lvis")
    try:
        cfg = lvis_config(name)
        with caplog.at_level(logging.INFO, logger="rs_detectron2"):
            facts = resolve_epoch_schedule(cfg)
        dicts = get_training_dataset_dicts("rs_shapes_lvis_train")
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.3)
        size = int(torch.ceil(factors).sum())
        assert size > float(factors.sum()) + 10  # ceil rounding lengthens the epoch
        max_iter = math.ceil(12 * size / 16)
        assert facts["images"] == 240 and facts["images_per_epoch"] == size
        assert cfg.train.max_iter == facts["max_iter"] == max_iter
        steps = [math.ceil(8 * size / 16), math.ceil(11 * size / 16), max_iter]
        assert list(cfg.lr_multiplier.scheduler.milestones) == steps
        assert cfg.lr_multiplier.warmup_length == pytest.approx(min(500 / max_iter, 1.0))
        log = " ".join(r.getMessage() for r in caplog.records if "Epoch schedule" in r.getMessage())
        for number in (240, size, max_iter, steps[0], steps[1]):
            assert str(number) in log
        # the loader uses the dataset loaded for the schedule: the annotations are parsed once
        loader = instantiate(cfg.dataloader.train)
        assert len(next(iter(loader))) == 16
        assert len(calls) == 1
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_lvis_schedule_switches_to_detectron2s(shapes):
    overrides = ["train.epoch_schedule=null", "dataloader.train.rounding=stochastic"]
    cfg = lvis_config("rs_shapes_lvis_train")
    check_overrides(cfg, overrides)  # null drops the LazyCall node: no ConfigError
    cfg = LazyConfig.apply_overrides(cfg, overrides)
    assert resolve_epoch_schedule(cfg) is None
    assert cfg.train.max_iter == 90000
    assert list(cfg.lr_multiplier.scheduler.milestones) == [60000, 80000, 90000]
    with pytest.raises(ConfigError):
        check_overrides(cfg, ["train.max_iter=null"])
    # stochastic rounding: 12 epochs of the expected repeated-set size
    cfg = lvis_config("rs_shapes_lvis_train")
    cfg.dataloader.train.rounding = "stochastic"
    facts = resolve_epoch_schedule(cfg)
    dicts = get_training_dataset_dicts("rs_shapes_lvis_train")
    expected = float(
        RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.3).sum()
    )
    assert facts["images_per_epoch"] == pytest.approx(expected)


def test_epoch_schedule_rejects_bad_epochs():
    with pytest.raises(ValueError, match="step epochs"):
        EpochSchedule(epochs=12, step_epochs=(11, 8))
    with pytest.raises(ValueError, match="step epochs"):
        EpochSchedule(epochs=10, step_epochs=(8, 11))


# --------------------------------------------------------------------------------- ranking pool


def test_ranking_pool_warning_names_the_paper_layout():
    cfg = LazyConfig.load(COCO_RS)
    assert ranking_pool_warning(cfg, 4) is None  # 4 GPUs x 4 images: the paper's pool
    message = ranking_pool_warning(cfg, 8)
    assert "2 per process here" in message and "4 in the paper" in message
    assert "--num-gpus 4" in message
    assert "model.proposal_generator.ranking_loss.pool=global" in message
    assert "model.roi_heads.box_predictor.ranking_loss.pool=global" in message
    # a global pool does not depend on the layout; stock models have no ranking loss
    cfg.model.proposal_generator.ranking_loss.pool = "global"
    cfg.model.roi_heads.box_predictor.ranking_loss.pool = "global"
    assert ranking_pool_warning(cfg, 8) is None
    stock = LazyConfig.load(os.path.join(CONFIGS, "COCO-Detection", "faster_rcnn_R_50_FPN_1x.py"))
    assert ranking_pool_warning(stock, 8) is None
    # RS-Cascade's per-stage losses are found in the list of predictors
    cascade = LazyConfig.load(
        os.path.join(CONFIGS, "COCO-Detection", "rs_cascade_rcnn_R_50_FPN_1x.py")
    )
    message = ranking_pool_warning(cascade, 16)
    assert "1 per process here" in message
    assert "model.roi_heads.box_predictors[2].ranking_loss.pool=global" in message
    # the 512 px aLRP recipe ranks 8 images per GPU
    alrp = os.path.join(CONFIGS, "COCO-Detection", "alrp_retinanet_R_50_FPN_512_100e.py")
    assert ranking_pool_warning(LazyConfig.load(alrp), 4) is None
    # the tiny CPU configs: 4 images on one process
    tiny = LazyConfig.load(os.path.join(CONFIGS, "quick_schedules", "rs_atss_tiny.py"))
    assert ranking_pool_warning(tiny, 1) is None


def test_repeat_factor_sampler_defaults_to_ceil(shapes):
    dicts = get_training_dataset_dicts("rs_shapes_lvis_train")
    sampler = repeat_factor_sampler(dicts, 0.3, seed=0, shuffle=False)
    factors = np.ceil(
        RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.3).numpy()
    )
    size = int(factors.sum())
    for counts in epochs_of(iter(sampler), size, 3):
        assert [counts[i] for i in range(len(dicts))] == factors.astype(int).tolist()


# ------------------------------------------------------------------------------- through train_net


def test_train_net_trains_for_the_resolved_epoch_schedule_and_warns_on_the_pool(tmp_path, shapes):
    """train_net.py turns an epoch schedule into max_iter from the repeated set (a quarter epoch
    here, so the run stays short) and warns that 2 images per process is not the paper's pool."""
    from rs_detectron2.utils.testing import read_metrics, run_train_net

    out = str(tmp_path / "out")
    schedule = (
        "train.epoch_schedule={_target_:rs_detectron2.engine.EpochSchedule,"
        "epochs:0.25,step_epochs:[],warmup_iters:5}"
    )
    proc = run_train_net(
        "configs/quick_schedules/rs_mask_rcnn_lvis_tiny.py",
        out,
        schedule,
        "dataloader.train.total_batch_size=2",
        "train.eval_period=0",
        "train.log_period=1",
        "train.checkpointer.period=100000",
        "train.seed=0",
    )
    cfg = LazyConfig.load(os.path.join(CONFIGS, "quick_schedules", "rs_mask_rcnn_lvis_tiny.py"))
    dicts = get_training_dataset_dicts("rs_shapes_lvis_train")
    thresh = cfg.dataloader.train.repeat_thresh
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, thresh)
    max_iter = math.ceil(0.25 * int(torch.ceil(factors).sum()) / 2)
    assert max_iter != cfg.train.max_iter  # else the test could not tell
    iterations = [r["iteration"] for r in read_metrics(out) if "total_loss" in r]
    assert iterations[-1] == max_iter - 1
    assert f"train.max_iter {max_iter}" in proc.stdout + proc.stderr
    assert "warning" in proc.stderr and "pool=global" in proc.stderr
    # the weights know their LVIS classes although the schedule loaded the training set
    from detectron2.data import MetadataCatalog

    from rs_detectron2.engine import read_model_info

    info = read_model_info(os.path.join(out, "model_final.pth"))
    classes = MetadataCatalog.get("rs_shapes_lvis_train").thing_classes
    assert info["dataset"] == "rs_shapes_lvis_train" and info["thing_classes"] == list(classes)
