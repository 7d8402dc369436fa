"""Every config in configs/ loads, and its model instantiates with the expected RS heads."""

import glob
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from rs_detectron2.losses import RankingLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every leaf config, by name: adding, renaming or deleting one is a deliberate edit here
# (test_the_listed_configs_are_the_files_on_disk).
CONFIGS = [
    "COCO-Detection/alrp_atss_R_50_FPN_1x.py",
    "COCO-Detection/alrp_faster_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/alrp_retinanet_R_50_FPN_1x.py",
    "COCO-Detection/alrp_retinanet_R_50_FPN_512_100e.py",
    "COCO-Detection/ap_atss_R_50_FPN_1x.py",
    "COCO-Detection/ap_retinanet_R_50_FPN_1x.py",
    "COCO-Detection/ap_retinanet_R_50_FPN_512_100e.py",
    "COCO-Detection/cascade_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/faster_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/fcos_R_50_FPN_1x.py",
    "COCO-Detection/retinanet_R_50_FPN_1x.py",
    "COCO-Detection/rs_atss_R_50_FPN_1x.py",
    "COCO-Detection/rs_atss_R_50_FPN_1x_tv.py",
    "COCO-Detection/rs_cascade_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/rs_cascade_rcnn_R_50_FPN_1x_tv.py",
    "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py",
    "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x_tv.py",
    "COCO-Detection/rs_fcos_R_50_FPN_1x.py",
    "COCO-Detection/rs_fcos_atss_R_50_FPN_1x.py",
    "COCO-Detection/rs_paa_R_50_FPN_1x.py",
    "COCO-Detection/rs_paa_R_50_FPN_1x_tv.py",
    "COCO-Detection/rs_retinanet_R_50_FPN_1x.py",
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
    "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x.py",
    "COCO-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_tv.py",
    "COCO-InstanceSegmentation/rs_solov2_R_101_FPN_3x.py",
    "COCO-InstanceSegmentation/rs_solov2_light_R_34_FPN_448_3x.py",
    "COCO-InstanceSegmentation/rs_yolact_R_50_550_55e.py",
    "COCO-InstanceSegmentation/solov2_R_101_FPN_3x.py",
    "COCO-InstanceSegmentation/solov2_light_R_34_FPN_448_3x.py",
    "COCO-InstanceSegmentation/yolact_R_50_550_55e.py",
    "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_rfs.py",
    "LVISv1-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_rfs.py",
    "LVISv1-InstanceSegmentation/rs_mask_rcnn_R_50_FPN_1x_rfs_tv.py",
    "quick_schedules/alrp_atss_tiny.py",
    "quick_schedules/alrp_faster_rcnn_tiny.py",
    "quick_schedules/alrp_retinanet_tiny.py",
    "quick_schedules/ap_atss_tiny.py",
    "quick_schedules/ap_retinanet_tiny.py",
    "quick_schedules/cascade_rcnn_tiny.py",
    "quick_schedules/faster_rcnn_tiny.py",
    "quick_schedules/fcos_tiny.py",
    "quick_schedules/mask_rcnn_tiny.py",
    "quick_schedules/retinanet_tiny.py",
    "quick_schedules/rs_atss_tiny.py",
    "quick_schedules/rs_cascade_rcnn_tiny.py",
    "quick_schedules/rs_faster_rcnn_tiny.py",
    "quick_schedules/rs_fcos_atss_tiny.py",
    "quick_schedules/rs_fcos_tiny.py",
    "quick_schedules/rs_mask_rcnn_lvis_tiny.py",
    "quick_schedules/rs_mask_rcnn_tiny.py",
    "quick_schedules/rs_paa_tiny.py",
    "quick_schedules/rs_retinanet_tiny.py",
    "quick_schedules/rs_solov2_released_tiny.py",
    "quick_schedules/rs_solov2_tiny.py",
    "quick_schedules/rs_yolact_tiny.py",
    "quick_schedules/solov2_tiny.py",
    "quick_schedules/yolact_tiny.py",
]


def load(name):
    return LazyConfig.load(os.path.join(REPO, "configs", name))


# A config's file name says which ranking loss its RS heads use.
RANKING_LOSSES = {"rs": "RankSortLoss", "ap": "APLoss", "alrp": "ALRPLoss"}


def test_the_listed_configs_are_the_files_on_disk():
    on_disk = {
        os.path.relpath(p, os.path.join(REPO, "configs")).replace(os.sep, "/")
        for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)
        if f"{os.sep}common{os.sep}" not in p
    }
    assert CONFIGS == sorted(set(CONFIGS))
    assert set(CONFIGS) == on_disk


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates(name):
    cfg = load(name)
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    base = os.path.basename(name)
    ranking = base.split("_")[0] in RANKING_LOSSES
    head_names = {type(m).__name__ for m in model.modules()}
    assert any(n.startswith("RS") for n in head_names) == ranking, head_names
    # the ranking loss named by the config's prefix is the one every RS head holds
    losses = {type(m).__name__ for m in model.modules() if isinstance(m, RankingLoss)}
    if ranking:
        assert losses == {RANKING_LOSSES[base.split("_")[0]]}, losses
    else:
        assert not losses


RECIPES_512 = [c for c in CONFIGS if c.endswith("_512_100e.py")]
# Families with recipes of their own (not the 1x R-CNN / dense recipe) and output layers of their
# own: their recipe and class-count tests live in tests/test_solov2.py and tests/test_yolact.py.
OWN_FAMILIES = ("solov2", "yolact")
R_CNN_AND_DENSE = [c for c in CONFIGS if not any(f in c for f in OWN_FAMILIES)]


@pytest.mark.parametrize(
    "name",
    [c for c in R_CNN_AND_DENSE if not c.startswith("quick_schedules") and c not in RECIPES_512],
)
def test_full_configs_follow_the_paper(name):
    cfg = load(name)
    assert cfg.dataloader.train.total_batch_size == 16
    # the authors' 1x: 12 epochs, LR x0.1 after epochs 8 and 11, 500 warmup iterations from 0.001
    if name.startswith("LVIS"):
        # in epochs of the repeated set, resolved at start (test_lvis_configs_follow_the_paper)
        schedule = cfg.train.epoch_schedule
        assert (schedule.epochs, list(schedule.step_epochs)) == (12, [8, 11])
        assert (schedule.warmup_iters, schedule.warmup_factor) == (500, pytest.approx(0.001))
    else:
        # 117,266 train2017 images at 16 per batch: epoch e ends at iteration ceil(e * 117266 / 16)
        assert cfg.train.max_iter == 87950
        assert list(cfg.lr_multiplier.scheduler.milestones) == [58633, 80621, 87950]
        assert cfg.lr_multiplier.warmup_length * cfg.train.max_iter == pytest.approx(500)
        # RS-FCOS: the authors' FCOS recipe warms up at a constant 1/3 (test_dense_heads.py)
        rs_fcos = os.path.basename(name).startswith("rs_fcos")
        assert cfg.lr_multiplier.warmup_factor == pytest.approx(1 / 3 if rs_fcos else 0.001)
        assert cfg.lr_multiplier.warmup_method == ("constant" if rs_fcos else "linear")
        assert cfg.train.epoch_schedule is None
    assert cfg.train.ranking_pool_images == 4
    assert cfg.train.device == ("cuda" if torch.cuda.is_available() else "cpu")
    base = os.path.basename(name)
    if base.endswith("_tv.py"):  # the authors' torchvision R-50: BN stats frozen, affine trained
        from rs_detectron2.modeling import FrozenStatsBatchNorm2d

        assert cfg.model.backbone.bottom_up.stem.norm is FrozenStatsBatchNorm2d
        assert cfg.train.init_checkpoint == "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
    else:  # pretrained MSRA backbones keep Detectron2's FrozenBN default
        assert cfg.model.backbone.bottom_up.stem.norm == "FrozenBN"
    dense = any(k in base for k in ("retinanet", "atss", "paa", "fcos"))
    ranking = base.split("_")[0] in RANKING_LOSSES
    if dense:
        # ranking-loss dense detectors: LR 0.008 at 16 images; stock RetinaNet and FCOS keep
        # Detectron2's 0.01; RS-FCOS the authors' FCOS recipe's 0.01
        assert cfg.optimizer.lr == pytest.approx(0.008 if ranking and "fcos" not in base else 0.01)
        # RS-ATSS / RS-PAA / RS-FCOS and their AP / aLRP variants decay the GN parameters as
        # mmdetection does (common/optim_dense.py); RetinaNet's head has no norm layers, the stock
        # FCOS keeps Detectron2's optimiser
        gn_decay = ranking and any(k in base for k in ("atss", "paa", "fcos"))
        assert cfg.optimizer.params.weight_decay_norm == (None if gn_decay else 0.0)
    elif ranking:
        assert cfg.optimizer.lr == pytest.approx(0.012)
        rpn = cfg.model.proposal_generator
        assert rpn.loss_weight == pytest.approx(0.2)
        assert tuple(rpn.box2box_transform.weights) == (10, 10, 5, 5)
        assert cfg.model.roi_heads.batch_size_per_image >= 10**6  # no RoI sampling
        predictors = cfg.model.roi_heads.get("box_predictors") or [
            cfg.model.roi_heads.box_predictor
        ]
        for p in predictors:
            # COCO 0.40; LVIS 0.60 (see test_lvis_configs_follow_the_paper)
            assert p.test_score_thresh == pytest.approx(0.6 if name.startswith("LVIS") else 0.4)
            assert tuple(p.box2box_transform.weights) == (10, 10, 5, 5)
    else:
        assert cfg.optimizer.lr == pytest.approx(0.02)


LVIS_CONFIGS = [c for c in CONFIGS if c.startswith("LVISv1")]


def test_lvis_configs_found():
    assert sorted(os.path.basename(c) for c in LVIS_CONFIGS) == [
        "mask_rcnn_R_50_FPN_1x_rfs.py",
        "rs_mask_rcnn_R_50_FPN_1x_rfs.py",
        "rs_mask_rcnn_R_50_FPN_1x_rfs_tv.py",
    ]
    assert "quick_schedules/rs_mask_rcnn_lvis_tiny.py" in CONFIGS


@pytest.mark.parametrize("name", LVIS_CONFIGS)
def test_lvis_configs_follow_the_paper(name):
    """Spec 3.5: K = 1203, RFS 0.001, multi-scale 640-800, batch 16; RS: score 0.60, 300
    detections, LR 0.012; stock: Detectron2's LVIS test settings (0.0001, 300)."""
    from rs_detectron2.data import build_repeat_factor_train_loader, get_training_dataset_dicts
    from rs_detectron2.evaluation import build_evaluator

    cfg = load(name)
    rs = os.path.basename(name).startswith("rs_")
    train = cfg.dataloader.train
    assert train._target_ is build_repeat_factor_train_loader
    assert train.dataset._target_ is get_training_dataset_dicts
    assert train.dataset.names == "lvis_v1_train"
    assert cfg.dataloader.test.dataset.names == "lvis_v1_val"
    assert train.repeat_thresh == pytest.approx(0.001)
    assert train.rounding == "ceil"  # each image ceil(r) times per epoch, as the authors' runs
    assert train.total_batch_size == 16
    # 1x = 12 epochs of the repeated set, resolved at start; Detectron2's 90k when switched off
    schedule = instantiate(cfg.train.epoch_schedule)
    assert (schedule.epochs, tuple(schedule.step_epochs), schedule.warmup_iters) == (
        12,
        (8, 11),
        500,
    )
    assert cfg.train.max_iter == 90000
    assert list(cfg.lr_multiplier.scheduler.milestones) == [60000, 80000, 90000]
    resize = train.mapper.augmentations[0]
    assert list(resize.short_edge_length) == list(range(640, 801, 32))
    assert resize.sample_style == "choice" and resize.max_size == 1333
    assert cfg.dataloader.evaluator._target_ is build_evaluator
    assert cfg.dataloader.evaluator.max_dets_per_image == 300
    predictor = cfg.model.roi_heads.box_predictor
    assert predictor.test_topk_per_image == 300
    assert predictor.test_score_thresh == pytest.approx(0.6 if rs else 0.0001)
    assert cfg.optimizer.lr == pytest.approx(0.012 if rs else 0.02)

    model = instantiate(cfg.model)
    heads = model.roi_heads
    assert heads.box_predictor.num_classes == 1203
    assert heads.box_predictor.test_topk_per_image == 300
    assert heads.box_predictor.test_score_thresh == pytest.approx(0.6 if rs else 0.0001)
    # the class-specific mask predictor has one output per LVIS class
    assert heads.mask_head.predictor.out_channels == 1203
    assert type(heads.mask_head).__name__.startswith("RS") == rs


def class_count_key(cfg):
    """The one key that sets a config's class count (what the CLI overrides)."""
    return "model.roi_heads.num_classes" if "roi_heads" in cfg.model else "model.num_classes"


def output_class_counts(model):
    """Class counts read off the instantiated layers (not the config): every classifier, box
    regressor and mask predictor of the model."""
    counts = {}
    if hasattr(model, "roi_heads"):
        heads = model.roi_heads
        predictors = heads.box_predictor
        predictors = predictors if isinstance(predictors, torch.nn.ModuleList) else [predictors]
        for i, p in enumerate(predictors):
            rs = type(p).__name__.startswith("RS")
            counts[f"cls_score{i}"] = p.cls_score.out_features - (0 if rs else 1)  # background
            reg = p.bbox_pred.out_features // 4
            if reg != 1:  # class-agnostic regression has one box
                counts[f"bbox_pred{i}"] = reg
        if getattr(heads, "mask_on", False):
            counts["mask"] = heads.mask_head.predictor.out_channels
    else:
        anchors = model.head.bbox_pred.out_channels // 4  # class-agnostic boxes per location
        counts["cls_score"] = model.head.cls_score.out_channels // anchors
        counts["model"] = model.num_classes
    return counts


@pytest.mark.parametrize("name", R_CNN_AND_DENSE)
def test_one_override_sets_the_class_count_of_the_whole_model(name):
    """The CLI's `KEY=VALUE` override of the top-level class count reaches every head (the configs
    keep Detectron2's links between related keys)."""
    cfg = load(name)
    cfg = LazyConfig.apply_overrides(cfg, [f"{class_count_key(cfg)}=3"])
    counts = output_class_counts(instantiate(cfg.model))
    assert counts and set(counts.values()) == {3}, counts


@pytest.mark.parametrize(
    "name", ["quick_schedules/rs_mask_rcnn_tiny.py", "quick_schedules/rs_atss_tiny.py"]
)
def test_a_model_with_an_overridden_class_count_trains_on_that_many_classes(name):
    from rs_detectron2.utils.testing import batch, train_step

    cfg = load(name)
    cfg = LazyConfig.apply_overrides(cfg, [f"{class_count_key(cfg)}=3"])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    inputs = batch(masks=True)
    for image in inputs:  # classes 0..7 of the helper batch folded into 0..2
        image["instances"].gt_classes = image["instances"].gt_classes % 3
    losses, _ = train_step(model, inputs)
    assert all(torch.isfinite(v) for v in losses.values())

    # Tied logits: every classifier zeroed, the RS losses of each head are known by hand.
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if module_name.rsplit(".", 1)[-1] in ("cls_score", "objectness_logits"):
                module.weight.zero_()
                module.bias.zero_()
    calls = []  # (loss module, logits, targets, (loss_rank, loss_sort)) of every ranking loss
    for module in model.modules():
        if isinstance(module, RankingLoss):
            module.register_forward_hook(lambda m, args, out: calls.append((m, *args, out)))
    train_step(model, inputs)
    two_stage = "roi_heads" in cfg.model
    class_loss = (model.roi_heads.box_predictor if two_stage else model).ranking_loss
    rpn_loss = [model.proposal_generator.ranking_loss] if two_stage else []
    assert [m for m, *_ in calls] == rpn_loss + [class_loss]
    for loss, logits, targets, (rank, sort) in calls:
        if loss is class_loss:
            assert logits.shape[-1] == 3  # the overridden class count reaches the ranking loss
        assert (targets > 0).any()
        expected_rank, expected_sort = tied_logits_rs_losses(targets)
        assert float(rank.detach()) == pytest.approx(expected_rank, rel=1e-5)
        assert float(sort) == pytest.approx(expected_sort, rel=1e-4, abs=1e-7)


def tied_logits_rs_losses(targets):
    """``(loss_rank, loss_sort)`` of RS when every logit is the same, worked out by hand.

    Every pair then has the same H(s_k - s_i) = h (1/2; 1 with delta 0), which cancels. For a
    positive i among P positives and N negatives, R_i = P h and NFP_i = N h, so the ranking error
    is N / (P + N). With L_i the positives of lower quality than i and G_i the others (i
    included): D_i = |L_i| h, A_i = |G_i| h, E_i and B_i are h times the sums of 1 - y over L_i
    and G_i, so l_S(i) = (A_i E_i - B_i D_i) / (A_i R_i) = |L_i| / P x (mean_G y - mean_L y).
    """
    y = targets.detach().flatten().double()
    pos = y[y > 0]
    num_pos, num_neg = len(pos), int((y == 0).sum())
    sort = sum(
        float((pos < q).sum() / num_pos * (pos[pos >= q].mean() - pos[pos < q].mean()))
        for q in pos
        if (pos < q).any()
    )
    return num_neg / (num_pos + num_neg), sort / num_pos


def test_512_recipes_follow_the_alrp_paper():
    """The aLRP paper's RetinaNet recipe: 512 x 512 SSD-style training, 32 images, 100 epochs with
    steps at 60 and 80, 6 anchors per location; LR 0.008 (aLRP) and 0.002 (AP)."""
    from rs_detectron2.data import SSDDatasetMapper

    assert sorted(os.path.basename(c) for c in RECIPES_512) == [
        "alrp_retinanet_R_50_FPN_512_100e.py",
        "ap_retinanet_R_50_FPN_512_100e.py",
    ]
    for name in RECIPES_512:
        cfg = load(name)
        epoch = -(-117266 // 32)
        assert cfg.dataloader.train.total_batch_size == 32
        assert cfg.dataloader.train.mapper._target_ is SSDDatasetMapper
        assert cfg.train.max_iter == 100 * epoch
        assert list(cfg.lr_multiplier.scheduler.milestones) == [60 * epoch, 80 * epoch, 100 * epoch]
        assert cfg.optimizer.lr == pytest.approx(
            0.008 if name.split("/")[1].startswith("alrp") else 0.002
        )
        model = instantiate(cfg.model)
        assert model.anchor_generator.num_anchors == [6] * 5
        if isinstance(model.ranking_loss, torch.nn.Module) and hasattr(
            model.ranking_loss, "period"
        ):
            assert int(model.ranking_loss.period) == epoch
