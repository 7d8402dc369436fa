"""Degenerate ground truth is dropped before training, per reason and with logged counts."""

import logging
import math
import uuid

import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from rs_detectron2.data import get_training_dataset_dicts, sanitize_dataset_dicts

SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]


def _ann(bbox=(10, 10, 20, 20), cat=0, segm="default", mode=BoxMode.XYWH_ABS, **extra):
    ann = {"bbox": list(bbox) if bbox is not None else None, "bbox_mode": mode, "category_id": cat}
    if bbox is None:
        del ann["bbox"]
    if segm == "default":
        ann["segmentation"] = [list(SQUARE)]
    elif segm is not None:
        ann["segmentation"] = segm
    ann.update(extra)
    return ann


def _dicts():
    """Image 1: one annotation per kind of defect plus two good ones (tagged "keep_*").
    Image 2: only bad annotations. Image 3: no annotations at all."""
    anns = [
        _ann(tag="keep_plain"),
        _ann(segm=[list(SQUARE), [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0]], tag="keep_2_bad_polys"),
        _ann(bbox=(10, 10, 20, 20, 5), tag="invalid_bbox"),
        _ann(bbox=None, tag="invalid_bbox"),
        _ann(bbox=(10, "a", 20, 20), tag="invalid_bbox"),
        _ann(bbox=(10, float("nan"), 20, 20), tag="non_finite_bbox"),
        _ann(bbox=(10, 10, float("inf"), 20), tag="non_finite_bbox"),
        _ann(bbox=(10, 10, -5, 20), tag="inverted_bbox"),
        _ann(bbox=(30, 10, 10, 20), mode=BoxMode.XYXY_ABS, tag="inverted_bbox"),
        _ann(bbox=(10, 10, 0, 20), tag="zero_area_bbox"),
        _ann(bbox=(10, 10, 10, 30), mode=BoxMode.XYXY_ABS, tag="zero_area_bbox"),
        _ann(cat=3, tag="bad_category"),
        _ann(cat=-1, tag="bad_category"),
        _ann(cat=1.0, tag="bad_category"),
        _ann(segm=None, tag="missing_segmentation"),
        _ann(segm=[], tag="empty_segmentation"),
        _ann(segm=[[1.0, 2.0, 3.0, 4.0]], tag="empty_segmentation"),
        _ann(segm=[[1.0, 2.0, 3.0, float("nan"), 5.0, 6.0]], tag="empty_segmentation"),
    ]
    bad_only = [_ann(bbox=(0, 0, 0, 0), tag="zero_area_bbox"), _ann(cat=7, tag="bad_category")]
    return [
        {"file_name": "a.jpg", "image_id": 1, "height": 50, "width": 50, "annotations": anns},
        {"file_name": "b.jpg", "image_id": 2, "height": 50, "width": 50, "annotations": bad_only},
        {"file_name": "c.jpg", "image_id": 3, "height": 50, "width": 50, "annotations": []},
    ]


def _expected_counts(dicts):
    counts = {}
    for d in dicts:
        for a in d["annotations"]:
            if not a["tag"].startswith("keep"):
                counts[a["tag"]] = counts.get(a["tag"], 0) + 1
    return counts


def test_each_defect_dropped_and_counted(caplog):
    dicts = _dicts()
    before = [dict(d, annotations=list(d["annotations"])) for d in dicts]
    with caplog.at_level(logging.INFO, logger="rs_detectron2"):
        out, counts = sanitize_dataset_dicts(dicts, num_classes=3, dataset_name="hand_made")
    assert len(out) == 3  # images are never dropped here
    assert [a["tag"] for a in out[0]["annotations"]] == ["keep_plain", "keep_2_bad_polys"]
    assert out[0]["annotations"][1]["segmentation"] == [SQUARE]
    assert out[1]["annotations"] == [] and out[2]["annotations"] == []
    expected = _expected_counts(dicts)
    for reason, n in expected.items():
        assert counts[reason] == n, (reason, counts)
    assert counts["polygons_removed"] == 2
    assert sum(v for k, v in counts.items() if k != "polygons_removed") == sum(expected.values())
    # inputs untouched
    assert [len(d["annotations"]) for d in dicts] == [len(d["annotations"]) for d in before]
    assert len(dicts[0]["annotations"][1]["segmentation"]) == 3
    # one warning with the total and every non-zero reason count
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 1
    total = sum(expected.values())
    n_anns = sum(len(d["annotations"]) for d in dicts)
    assert "'hand_made'" in msgs[0] and f"dropped {total} of {n_anns} annotations" in msgs[0]
    for reason, n in expected.items():
        assert f"{n} {reason}" in msgs[0]
    assert "2 polygons_removed" in msgs[0]


def test_no_class_check_without_num_classes_and_clean_data_is_kept(caplog):
    good = [{"image_id": 1, "annotations": [_ann(cat=5), _ann(bbox=np.array([1.0, 1, 4, 4]))]}]
    with caplog.at_level(logging.INFO, logger="rs_detectron2"):
        out, counts = sanitize_dataset_dicts(good)
    assert out[0]["annotations"] == good[0]["annotations"]
    assert not any(counts.values())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # RLE (crowd) segmentation is kept as it is; min_box_size widens "zero area"
    rle = {"size": [50, 50], "counts": "abc"}
    crowd = [{"image_id": 1, "annotations": [_ann(segm=rle, iscrowd=1), _ann(bbox=(0, 0, 2, 9))]}]
    out, counts = sanitize_dataset_dicts(crowd, 1, min_box_size=2.0)
    assert [a["segmentation"] for a in out[0]["annotations"]] == [rle]
    assert counts["zero_area_bbox"] == 1


def test_boxes_only_dataset_needs_no_segmentation():
    dicts = [{"image_id": 1, "annotations": [_ann(segm=None), _ann(segm=None, bbox=(1, 1, 0, 1))]}]
    out, counts = sanitize_dataset_dicts(dicts, 1)
    assert len(out[0]["annotations"]) == 1 and counts["missing_segmentation"] == 0
    assert counts["zero_area_bbox"] == 1


def test_training_dicts_are_sanitised_then_filtered(caplog):
    """get_training_dataset_dicts (used by every shipped config) drops the bad annotations, then
    the images left without any (Detectron2 logs that count)."""
    name = f"sanitize_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, _dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"])
    try:
        with caplog.at_level(logging.INFO):
            out = get_training_dataset_dicts(name)
        assert [d["image_id"] for d in out] == [1]
        assert [a["tag"] for a in out[0]["annotations"]] == ["keep_plain", "keep_2_bad_polys"]
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "Removed 2 images with no usable annotations" in text
        assert "Sanitised the ground truth" in text
        unfiltered = get_training_dataset_dicts(name, filter_empty=False)
        assert len(unfiltered) == 3
        raw = get_training_dataset_dicts(name, filter_empty=False, sanitize=False)
        assert sum(len(d["annotations"]) for d in raw) == sum(
            len(d["annotations"]) for d in _dicts()
        )
        # all images bad -> a clear error instead of an empty loader
        bad = f"{name}_bad"
        DatasetCatalog.register(bad, lambda: _dicts()[1:])
        MetadataCatalog.get(bad).set(thing_classes=["a", "b", "c"])
        with pytest.raises(ValueError, match="No training image"):
            get_training_dataset_dicts(bad)
    finally:
        for n in (name, f"{name}_bad"):
            if n in DatasetCatalog.list():
                DatasetCatalog.remove(n)
                MetadataCatalog.remove(n)


def test_sanitised_dicts_go_through_the_mapper():
    """What survives can be turned into training Instances without errors or non-finite boxes."""
    from detectron2.data import detection_utils as utils

    out, _ = sanitize_dataset_dicts(_dicts(), 3)
    annos = out[0]["annotations"]
    inst = utils.annotations_to_instances(
        [
            dict(
                a,
                bbox=BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS),
                bbox_mode=BoxMode.XYXY_ABS,
            )
            for a in annos
        ],
        (50, 50),
        mask_format="polygon",
    )
    assert len(inst) == 2 and bool(inst.gt_boxes.nonempty().all())
    assert all(math.isfinite(v) for v in inst.gt_boxes.tensor.flatten().tolist())
