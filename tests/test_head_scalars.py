"""Every RS head logs the unweighted mean localisation loss of its positives (GIoU, Dice) as an
event-storage scalar beside its balanced losses; under FiniteLossGuard these scalars are read in the
guard's single host transfer (no synchronisation of their own)."""

import collections
import contextlib
import importlib

import pytest
import torch
from torchvision.ops import generalized_box_iou

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage, get_event_storage

from rs_detectron2.engine import FiniteLossGuard
from rs_detectron2.losses import ALRPLoss
from rs_detectron2.modeling import RSFastRCNNOutputLayers
from rs_detectron2.modeling.roi_heads import BOX_SCORE_FIELD, RSMaskRCNNConvUpsampleHead
from rs_detectron2.utils.scalars import put_tensor_scalar
from rs_detectron2.utils.testing import batch, build_tiny, host_reads

M = "rs_detectron2.modeling."
RPN = ("rpn/giou_loss", M + "proposal_generator.rs_rpn", "giou_loss", 0, "loss_rpn_box")
RCNN = ("rs_rcnn/giou_loss", M + "roi_heads.rs_fast_rcnn", "giou_loss", 0, "loss_rcnn_box")
DENSE = ("dense/giou_loss", M + "meta_arch.rs_dense_detector", "giou_loss", 0, "loss_dense_box")
# Per tiny model: (scalar, module of the head, loss function it calls, which call, balanced key).
HEADS = {
    "rs_faster_rcnn": [RPN, RCNN],
    "rs_mask_rcnn": [
        RPN,
        RCNN,
        ("rs_rcnn/dice_loss", M + "roi_heads.rs_mask_head", "dice_loss", 0, "loss_rcnn_mask"),
    ],
    "rs_cascade_rcnn": [RPN]
    + [
        (f"stage{k}/rs_rcnn/giou_loss", RCNN[1], "giou_loss", k, f"loss_rcnn_box_stage{k}")
        for k in range(3)
    ],
    "rs_retinanet": [DENSE],
    "rs_atss": [DENSE],
    "rs_paa": [DENSE],
    "rs_fcos": [DENSE],
    "rs_solov2": [("solo/dice_loss", M + "solov2.rs_solov2", "dice_loss", 0, "loss_solo_mask")],
    "rs_yolact": [
        ("dense/giou_loss", M + "yolact.rs_yolact", "giou_loss", 0, "loss_dense_box"),
        ("dense/dice_loss", M + "yolact.rs_yolact", "dice_loss", 0, "loss_dense_mask"),
    ],
}
# The loss keys of each model, as before the scalars were added: no new loss entries.
RCNN_KEYS = {"loss_rpn_rank", "loss_rpn_sort", "loss_rpn_box"}
DENSE_KEYS = {"loss_dense_rank", "loss_dense_sort", "loss_dense_box"}
LOSS_KEYS = {
    "rs_faster_rcnn": RCNN_KEYS | {"loss_rcnn_rank", "loss_rcnn_sort", "loss_rcnn_box"},
    "rs_mask_rcnn": RCNN_KEYS
    | {"loss_rcnn_rank", "loss_rcnn_sort", "loss_rcnn_box", "loss_rcnn_mask"},
    "rs_cascade_rcnn": RCNN_KEYS
    | {f"loss_rcnn_{t}_stage{k}" for t in ("rank", "sort", "box") for k in range(3)},
    "rs_retinanet": DENSE_KEYS,
    "rs_atss": DENSE_KEYS,
    "rs_paa": DENSE_KEYS,
    "rs_fcos": DENSE_KEYS,
    "rs_solov2": {"loss_solo_rank", "loss_solo_sort", "loss_solo_mask"},
    "rs_yolact": DENSE_KEYS | {"loss_dense_mask"},
}


def loc_scalars(storage):
    """{name: value} of the GIoU / Dice scalars in ``storage``."""
    return {
        k: v for k, (v, _) in storage.latest().items() if k.endswith(("giou_loss", "dice_loss"))
    }


def forward(model, inputs, guard=False, seed=1):
    """One training forward in a fresh EventStorage (through FiniteLossGuard with ``guard``)."""
    torch.manual_seed(seed)
    with EventStorage(0) as storage:
        losses = (FiniteLossGuard(model) if guard else model)(inputs)
    return losses, storage


@contextlib.contextmanager
def all_host_reads():
    """:func:`host_reads` that also records ``float(tensor)`` (as ``"float"``): the conversion
    ``EventStorage.put_scalar`` applies to a tensor."""
    original = torch.Tensor.__dict__.get("__float__")
    base = torch._C.TensorBase.__float__
    with host_reads() as calls:

        def counting_float(self):
            calls.append("float")
            return base(self)

        torch.Tensor.__float__ = counting_float
        try:
            yield calls
        finally:
            if original is None:
                del torch.Tensor.__float__
            else:
                torch.Tensor.__float__ = original


@pytest.mark.parametrize("model_name", sorted(HEADS))
def test_every_head_logs_its_unweighted_localisation_loss(model_name, monkeypatch):
    # Record what each head's own GIoU / Dice call returns (the per-positive losses).
    outputs = collections.defaultdict(list)
    for _, module_name, fn_name, _, _ in HEADS[model_name]:
        module = importlib.import_module(module_name)
        if (module_name, fn_name) in outputs:
            continue
        original = getattr(module, fn_name)

        def spy(*args, _key=(module_name, fn_name), _fn=original, **kwargs):
            out = _fn(*args, **kwargs)
            outputs[_key].append(out.detach().clone())
            return out

        outputs[(module_name, fn_name)] = []
        monkeypatch.setattr(module, fn_name, spy)

    losses, storage = forward(build_tiny(f"{model_name}_tiny.py"), batch(masks=True))
    assert set(losses) == LOSS_KEYS[model_name]  # the scalars are not losses
    logged = loc_scalars(storage)
    assert set(logged) == {name for name, *_ in HEADS[model_name]}
    for name, module_name, fn_name, call, balanced_key in HEADS[model_name]:
        per_positive = outputs[(module_name, fn_name)][call]
        assert per_positive.numel() > 0, name
        value = logged[name]
        assert torch.isfinite(torch.tensor(value)), name
        bound = 2.0 if fn_name == "giou_loss" else 1.0
        assert 0.0 <= value <= bound, (name, value)
        assert value == pytest.approx(float(per_positive.double().mean()), rel=1e-5), name
        # the balanced loss equals rank + sort, not the localisation loss
        assert abs(value - float(losses[balanced_key])) > 1e-3, name


@pytest.mark.parametrize("model_name", sorted(HEADS))
def test_no_positives_log_no_localisation_scalar(model_name):
    model = build_tiny(f"{model_name}_tiny.py")
    for guard in (False, True):
        losses, storage = forward(model, batch(num_empty=3, masks=True), guard=guard)
        assert set(losses) == LOSS_KEYS[model_name]
        assert loc_scalars(storage) == {}
        for name, (value, _) in storage.latest().items():
            assert torch.isfinite(torch.tensor(value)), name


@pytest.mark.parametrize("model_name", sorted(HEADS) + ["rs_retinanet+alrp"])
def test_guard_reads_the_scalars_in_its_one_host_transfer(model_name, monkeypatch):
    name, _, loss = model_name.partition("+")
    model = build_tiny(f"{name}_tiny.py")
    if loss:  # aLRP logs its self-balance weight through put_ranking_loss_scalars
        model.ranking_loss = ALRPLoss(period=1000)  # its weight stays put
    inputs = batch(masks=True)

    # Without the guard: every scalar is put at once, each tensor with its own float().
    with all_host_reads() as unguarded_reads:
        _, plain = forward(model, inputs)
    # The model's own reads, as before the scalars existed: put_scalar converts nothing.
    with monkeypatch.context() as patch:
        patch.setattr(EventStorage, "put_scalar", lambda self, *args, **kwargs: None)
        with all_host_reads() as model_reads:
            forward(model, inputs)
    # Through the guard: the model's own reads and the guard's single transfer, nothing more.
    with all_host_reads() as guarded_reads:
        losses, guarded = forward(model, inputs, guard=True)

    assert collections.Counter(guarded_reads) == collections.Counter(model_reads + ["tolist"])
    expected = {n for n, *_ in HEADS[name]}
    if loss:
        expected.add("dense/alrp_weight")
    tensor_scalars = {k: v for k, (v, _) in plain.latest().items() if k in expected}
    assert set(tensor_scalars) == expected
    assert unguarded_reads.count("float") >= len(expected)  # the counter sees put_scalar's reads
    # the queued scalars reached the storage, under the same names (stages' scopes included),
    # with the same values and the storage's iteration
    latest = guarded.latest()
    assert set(plain.latest()) == set(latest)
    for key, value in tensor_scalars.items():
        assert latest[key] == (pytest.approx(value, rel=1e-6), 0), key
    if not loss:
        assert set(losses) == LOSS_KEYS[name]


def test_box_scalar_is_the_plain_mean_giou_loss_of_the_foreground():
    """RS Fast R-CNN on hand-made RoIs: the scalar is 1 - mean GIoU of the regressed foreground
    boxes (torchvision's GIoU), not their score-weighted mean nor the balanced loss."""
    g = torch.Generator().manual_seed(0)
    predictor = RSFastRCNNOutputLayers(
        ShapeSpec(channels=8),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        num_classes=3,
    )
    proposals = Instances((200, 200))
    proposals.proposal_boxes = Boxes(
        torch.tensor([[10, 10, 60, 70], [100, 90, 180, 150], [0, 0, 30, 30], [50, 120, 90, 190]])
    )
    proposals.gt_boxes = Boxes(
        torch.tensor([[15, 5, 70, 75], [95, 100, 170, 160], [0, 0, 1, 1], [40, 110, 95, 200]])
    )
    proposals.gt_classes = torch.tensor([0, 2, 3, 1])  # class 3 = background
    scores = torch.randn(4, 3, generator=g) * 2
    deltas = torch.randn(4, 12, generator=g) * 0.3
    with EventStorage(0) as storage:
        losses = predictor.losses((scores, deltas), [proposals])
    fg = torch.tensor([0, 1, 3])
    fg_deltas = deltas.view(4, 3, 4)[fg, proposals.gt_classes[fg]]
    boxes = predictor.box2box_transform.apply_deltas(fg_deltas, proposals.proposal_boxes.tensor[fg])
    expected = 1 - generalized_box_iou(boxes, proposals.gt_boxes.tensor[fg]).diagonal().mean()
    value = storage.latest()["rs_rcnn/giou_loss"][0]
    assert value == pytest.approx(float(expected), rel=1e-5)
    assert abs(value - float(losses["loss_rcnn_box"])) > 1e-3


def test_mask_scalar_is_the_plain_mean_dice_loss_of_the_rois():
    """The RS mask head on hand-made RoIs: the scalar is the unweighted mean Dice loss of the
    GT-class masks against the GT masks cropped to the RoIs, not the score-weighted loss."""
    torch.manual_seed(0)
    head = RSMaskRCNNConvUpsampleHead(
        ShapeSpec(channels=4, height=7, width=7), num_classes=3, conv_dims=[4]
    ).train()
    inst = Instances((64, 64))
    inst.proposal_boxes = Boxes(torch.tensor([[4.0, 4, 40, 44], [20, 10, 60, 50], [0, 0, 30, 63]]))
    inst.gt_classes = torch.tensor([2, 0, 1])
    bits = torch.zeros(3, 64, 64, dtype=torch.bool)
    bits[0, 8:40, 6:36] = bits[1, 15:45, 25:58] = bits[2, 0:50, 2:20] = True
    inst.gt_masks = BitMasks(bits)
    inst.set(BOX_SCORE_FIELD, torch.tensor([0.9, 0.1, 0.5]))
    x = torch.randn(3, 4, 7, 7)
    with EventStorage(0) as storage:
        loss = head(x, [inst])["loss_rcnn_mask"]
    logits = head.layers(x)
    side = logits.shape[-1]
    probs = logits[torch.arange(3), inst.gt_classes].sigmoid().flatten(1)
    targets = inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, side).float().flatten(1)
    dice = 1 - 2 * (probs * targets).sum(1) / ((probs**2).sum(1) + (targets**2).sum(1) + 1e-5)
    value = storage.latest()["rs_rcnn/dice_loss"][0]
    assert value == pytest.approx(float(dice.mean()), rel=1e-5)
    assert abs(value - float(loss)) > 1e-3  # the weighted mean differs


class _LoggingModel(torch.nn.Module):
    """One weight; logs a half-precision scalar inside a name scope, returns one loss."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.25, 0.5]))

    def forward(self, batched_inputs):
        with get_event_storage().name_scope("stage3"):
            put_tensor_scalar("head/thing", self.w.sum().half())
        return {"loss_a": (self.w**2).sum()}


def test_deferred_scalar_keeps_its_name_scope_and_the_iteration():
    model = _LoggingModel()
    with EventStorage(7) as storage:
        with all_host_reads() as reads:
            losses = FiniteLossGuard(model)([{}])
    assert reads == ["tolist"]
    assert storage.latest()["stage3/head/thing"] == (0.75, 7)
    assert set(losses) == {"loss_a"}
    with EventStorage(3) as storage:  # without the guard: put at once
        model([{}])
    assert storage.latest()["stage3/head/thing"] == (0.75, 3)
    with pytest.raises(AssertionError, match="EventStorage"):  # as any put_scalar of a head
        model([{}])
