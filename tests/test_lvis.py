"""LVIS on the generated long-tailed shapes set: repeat factors, the sampler's draws, one dataset
load for the RFS loader, the evaluator chosen from metadata, and lvis-api on numpy without
np.float."""

import copy
import itertools
import json
import math
import os
import uuid
from collections import Counter

import numpy as np
import pytest
import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data.detection_utils import annotations_to_instances
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.evaluation import COCOEvaluator, LVISEvaluator
from detectron2.structures import Instances

from rs_detectron2.data import (
    SHAPES_CLASSES,
    generate_shapes,
    get_training_dataset_dicts,
    register_shapes,
    repeat_factor_sampler,
)
from rs_detectron2.evaluation import (
    FastCOCOEvaluator,
    FastLVISEvaluator,
    LVISAPIEvaluator,
    build_evaluator,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_LVIS = os.path.join(REPO, "configs", "quick_schedules", "rs_mask_rcnn_lvis_tiny.py")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Default-size shapes set (240 train / 40 val), registered under the rs_shapes_* names."""
    root = str(tmp_path_factory.mktemp("lvis_shapes"))
    paths = generate_shapes(root)
    register_shapes(root)
    return paths


@pytest.fixture(scope="module")
def train_dicts(shapes):
    """The training dicts of rs_shapes_lvis_train, as the configs load them."""
    return get_training_dataset_dicts("rs_shapes_lvis_train")


def _expected_repeat_factors(lvis_json, t):
    """r(c) = max(1, sqrt(t / f(c))), f(c) = fraction of the (annotated) training images with c;
    r(I) = max over the categories of I (1 without any). Computed from the JSON, by image id."""
    with open(lvis_json) as f:
        data = json.load(f)
    cats_of = {}
    for a in data["annotations"]:
        cats_of.setdefault(a["image_id"], set()).add(a["category_id"])
    n = len(cats_of)
    images_with = Counter(c for cats in cats_of.values() for c in cats)
    r_cat = {c: max(1.0, math.sqrt(t / (k / n))) for c, k in images_with.items()}
    return {i: max(r_cat[c] for c in cats) for i, cats in cats_of.items()}


def _factors(sampler):
    # RepeatFactorTrainingSampler keeps r(I) split into integer and fractional parts
    return (sampler._int_part + sampler._frac_part).numpy()


def test_tiny_config_threshold_repeats_the_rare_classes(shapes, train_dicts):
    t = LazyConfig.load(TINY_LVIS).dataloader.train.repeat_thresh
    dicts = train_dicts
    expected = _expected_repeat_factors(shapes["lvis_train"], t)
    got = _factors(repeat_factor_sampler(dicts, t, seed=0))
    assert len(got) == len(dicts) == len(expected) == 240
    np.testing.assert_allclose(got, [expected[d["image_id"]] for d in dicts], rtol=1e-6)
    # the long tail shows: rare-class images are repeated, images of frequent classes only are not
    rare = {SHAPES_CLASSES.index("crescent"), SHAPES_CLASSES.index("star")}
    has_rare = np.array([any(a["category_id"] in rare for a in d["annotations"]) for d in dicts])
    assert got[has_rare].min() > 1.9 and (got[~has_rare] < 1.9).all()
    assert (got == 1.0).sum() > 100


@pytest.mark.parametrize("t", [0.001, 0.3])
def test_repeat_factors_match_formula(shapes, train_dicts, t):
    dicts = train_dicts
    expected = _expected_repeat_factors(shapes["lvis_train"], t)
    got = _factors(repeat_factor_sampler(dicts, t, seed=0))
    np.testing.assert_allclose(got, [expected[d["image_id"]] for d in dicts], rtol=1e-6)
    if t == 0.001:  # LVIS's threshold repeats nothing in 240 images (rarest: 3 images)
        assert (got == 1.0).all()


def test_stochastic_rounding_draws_follow_repeat_factors(shapes, train_dicts):
    """Detectron2's rounding (rounding="stochastic"); the default, ceil, is in test_parity_data."""
    dicts = train_dicts
    t = 0.3
    expected = _expected_repeat_factors(shapes["lvis_train"], t)
    r = np.array([expected[d["image_id"]] for d in dicts])
    assert len(np.unique(np.round(r % 1, 3))) > 3  # several distinct fractional parts
    epochs = 200
    for seed in (0, 1):
        # shuffled (as in training): mean draws per image over many epochs ~ r(I)
        stream = iter(repeat_factor_sampler(dicts, t, seed=seed, rounding="stochastic"))
        n = int(round(epochs * r.sum()))
        counts = np.bincount(list(itertools.islice(stream, n)), minlength=len(dicts)) / epochs
        assert np.abs(counts - r).max() < 0.2, (seed, np.abs(counts - r).max())
        assert abs(counts.sum() - r.sum()) < 1e-6 * n + 1.0 / epochs
        # per image mean of floor/ceil draws: error shrinks like 1/sqrt(epochs)
        assert np.abs(counts - r).mean() < 0.05

    # unshuffled: epochs are visible (indices ascend); each epoch repeats image I floor(r) or
    # ceil(r) times, ceil with probability frac(r) (stochastic rounding)
    stream = iter(repeat_factor_sampler(dicts, t, seed=7, shuffle=False, rounding="stochastic"))
    per_epoch, current, prev = [], Counter(), -1
    while len(per_epoch) < epochs:
        i = next(stream)
        if i < prev:
            per_epoch.append(current)
            current = Counter()
        current[i] += 1
        prev = i
    table = np.array([[c[i] for i in range(len(dicts))] for c in per_epoch])  # (epochs, images)
    floor = np.floor(r)
    assert ((table == floor) | (table == floor + 1)).all()
    frac_hat = (table - floor).mean(axis=0)
    frac = r - floor
    assert np.abs(frac_hat - frac).max() < 0.18
    assert np.corrcoef(frac_hat, frac)[0, 1] > 0.9


def _counting_dataset(shapes):
    """A registered copy of rs_shapes_lvis_train whose loader counts its calls."""
    base = DatasetCatalog.get("rs_shapes_lvis_train")
    calls = []
    name = f"count_lvis_{uuid.uuid4().hex[:8]}"

    def load():
        calls.append(1)
        return copy.deepcopy(base)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(thing_classes=list(SHAPES_CLASSES), evaluator_type="lvis")
    return name, calls


def test_rfs_loader_loads_the_dataset_once(shapes):
    cfg = LazyConfig.load(TINY_LVIS)
    name, calls = _counting_dataset(shapes)
    try:
        cfg.dataloader.train.dataset.names = name
        cfg.dataloader.train.seed = 0
        loader = instantiate(cfg.dataloader.train)
        assert len(calls) == 1
        batch = next(iter(loader))
        assert len(batch) == cfg.dataloader.train.total_batch_size
        assert all(len(b["instances"]) > 0 and b["image"].shape[0] == 3 for b in batch)
        assert len(calls) == 1

        # Detectron2's recipe for RFS in a LazyConfig instantiates the dataset node twice
        calls.clear()
        cfg.dataloader.train = L(build_detection_train_loader)(
            dataset=cfg.dataloader.train.dataset,
            mapper=cfg.dataloader.train.mapper,
            sampler=L(RepeatFactorTrainingSampler)(
                repeat_factors=L(
                    RepeatFactorTrainingSampler.repeat_factors_from_category_frequency
                )(dataset_dicts="${dataloader.train.dataset}", repeat_thresh=0.1),
                seed=0,
            ),
            total_batch_size=4,
        )
        instantiate(cfg.dataloader.train)
        assert len(calls) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ------------------------------------------------------------------------------------ evaluation


def _predictions(name, perturb=False, seed=0):
    """Ground truth of ``name`` as model outputs (score 1); ``perturb`` shifts every box and mask
    by 5-15 % of its size, gives random scores and a wrong class to a quarter of them."""
    rng = np.random.RandomState(seed)
    pairs = []
    for d in DatasetCatalog.get(name):
        h, w = d["height"], d["width"]
        gt = annotations_to_instances(d["annotations"], (h, w), mask_format="bitmask")
        boxes, masks, classes = (
            gt.gt_boxes.tensor.clone(),
            gt.gt_masks.tensor.clone(),
            gt.gt_classes,
        )
        scores = torch.ones(len(gt))
        if perturb:
            classes = classes.clone()
            for k in range(len(gt)):
                x0, y0, x1, y1 = boxes[k].tolist()
                dx = int(round((x1 - x0) * rng.uniform(0.05, 0.15))) * int(rng.choice([-1, 1]))
                dy = int(round((y1 - y0) * rng.uniform(0.05, 0.15))) * int(rng.choice([-1, 1]))
                boxes[k] += torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)
                masks[k] = torch.roll(masks[k], shifts=(dy, dx), dims=(0, 1))
                if rng.rand() < 0.25:
                    classes[k] = (classes[k] + 1) % len(SHAPES_CLASSES)
            scores = torch.tensor(rng.uniform(0.1, 1.0, len(gt)), dtype=torch.float32)
        pred = Instances(
            (h, w),
            pred_boxes=type(gt.gt_boxes)(boxes),
            scores=scores,
            pred_classes=classes,
            pred_masks=masks,
        )
        pairs.append(({"image_id": d["image_id"], "height": h, "width": w}, {"instances": pred}))
    return pairs


def _evaluate(evaluator, pairs):
    evaluator.reset()
    for inp, out in pairs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


@pytest.fixture
def without_np_float(monkeypatch):
    """numpy without the ``np.float`` alias during the test (as numpy >= 1.24), restored after."""
    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.delattr(np, "float")
    assert "float" not in vars(np)


def test_lvis_evaluation_both_backends(shapes, without_np_float):
    exact = _predictions("rs_shapes_lvis_val")
    perturbed = _predictions("rs_shapes_lvis_val", perturb=True)
    results = {}
    for fast in (True, False):
        ev = build_evaluator(
            "rs_shapes_lvis_val", fast=fast, tasks=("bbox", "segm"), distributed=False
        )
        assert type(ev) is (FastLVISEvaluator if fast else LVISAPIEvaluator)
        assert isinstance(ev, LVISEvaluator)
        good = _evaluate(ev, exact)
        bad = _evaluate(ev, perturbed)
        assert "float" not in vars(np)  # lvis-api's np.float alias exists only while it evaluates
        for task in ("bbox", "segm"):
            assert {"AP", "APr", "APc", "APf"} <= set(good[task])
            for key in ("AP", "APr", "APc", "APf"):
                assert good[task][key] > 99.0, (fast, task, key, good[task])
                assert 1.0 < bad[task][key] < 90.0, (fast, task, key, bad[task])
        results[fast] = bad
    for task in ("bbox", "segm"):
        for key, v in results[True][task].items():
            assert v == pytest.approx(results[False][task][key], abs=1e-6), (task, key)


def test_evaluator_follows_metadata(shapes):
    for fast, cls in ((True, FastCOCOEvaluator), (False, COCOEvaluator)):
        assert type(build_evaluator("rs_shapes_val", fast=fast, distributed=False)) is cls
    assert type(build_evaluator("rs_shapes_lvis_val", distributed=False)) is FastLVISEvaluator
    name = f"no_type_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(thing_classes=["a"])
    try:
        with pytest.raises(ValueError, match="evaluator_type"):
            build_evaluator(name)
    finally:
        MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="one dataset"):
        build_evaluator(["rs_shapes_val", "rs_shapes_lvis_val"])


def test_lvis_configs_evaluator_is_lvis(shapes):
    cfg = LazyConfig.load(TINY_LVIS)
    ev = instantiate(cfg.dataloader.evaluator)
    assert isinstance(ev, FastLVISEvaluator) and ev._max_dets_per_image == 300
    cfg.dataloader.evaluator.fast = False
    assert type(instantiate(cfg.dataloader.evaluator)) is LVISAPIEvaluator
