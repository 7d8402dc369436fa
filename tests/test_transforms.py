"""SSD-style augmentations: photometric distortion, expand, min-IoU crop and the mapper that runs
them with the boxes, on small generated images (CPU, seeded)."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from fvcore.transforms.transform import NoOpTransform
from PIL import Image

from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from rs_detectron2.data.transforms import (
    ClipCropTransform,
    Expand,
    ExpandTransform,
    MinIoURandomCrop,
    PhotometricDistortion,
    PhotometricTransform,
    SSDDatasetMapper,
    box_centres_inside,
    centres_inside_image,
    clip_polygon,
    ssd_augmentations,
)

MEAN = (103.53, 116.28, 123.675)


def _image(h=48, w=64, seed=0, dtype=np.uint8):
    img = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3))
    return img.astype(dtype)


def _area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _iou(crop, boxes):
    x0, y0, x1, y1 = crop
    iw = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
    inter = iw * ih
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / ((x1 - x0) * (y1 - y0) + areas - inter)


# ---------------------------------------------------------------- photometric distortion


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_photometric_keeps_shape_dtype_and_range_and_changes_the_image(dtype):
    np.random.seed(0)
    img = _image(dtype=dtype)
    aug = PhotometricDistortion()
    changed = 0
    for _ in range(40):
        out = aug.get_transform(img).apply_image(img)
        assert out.shape == img.shape and out.dtype == img.dtype
        assert out.min() >= 0 and out.max() <= 255
        changed += not np.array_equal(out, img)
    assert changed >= 30  # all five steps skipped has probability 1/32 per draw
    out = PhotometricDistortion(prob=1.0).get_transform(img).apply_image(img)
    assert np.abs(out.astype(np.float64) - img).mean() > 1.0


def test_photometric_draws_respect_the_ranges_and_probability():
    np.random.seed(1)
    aug = PhotometricDistortion()
    img = _image(8, 8)
    tfms = [aug.get_transform(img) for _ in range(2000)]
    b = np.array([t.brightness_delta for t in tfms])
    c = np.array([t.contrast_alpha for t in tfms])
    s = np.array([t.saturation_alpha for t in tfms])
    h = np.array([t.hue_delta for t in tfms])
    assert np.all(np.abs(b) <= 32) and np.abs(b).max() > 30
    assert np.all((c >= 0.5) & (c <= 1.5)) and c.min() < 0.55 and c.max() > 1.45
    assert np.all((s >= 0.5) & (s <= 1.5)) and s.min() < 0.55 and s.max() > 1.45
    assert np.all(np.abs(h) <= 18) and np.abs(h).max() > 17
    for applied in (b != 0, c != 1, s != 1, h != 0):
        assert abs(applied.mean() - 0.5) < 0.05
    swapped = [t.channel_order for t in tfms if t.channel_order is not None]
    assert abs(len(swapped) / len(tfms) - 0.5) < 0.05
    assert all(sorted(order) == [0, 1, 2] for order in swapped)
    assert len(set(swapped)) == 6
    assert abs(np.mean([t.contrast_last for t in tfms]) - 0.5) < 0.05


def test_photometric_steps_do_what_they_say():
    img = _image(dtype=np.float32)
    out = PhotometricTransform(brightness_delta=20.5).apply_image(img)
    np.testing.assert_allclose(out, np.clip(img + 20.5, 0, 255))
    out = PhotometricTransform(contrast_alpha=1.3).apply_image(img)
    np.testing.assert_allclose(out, np.clip(img * 1.3, 0, 255), rtol=1e-6)
    out = PhotometricTransform(channel_order=(2, 0, 1)).apply_image(img)
    np.testing.assert_array_equal(out, img[..., [2, 0, 1]])
    # uint8 images are computed in float and rounded once
    img8 = _image()
    out = PhotometricTransform(brightness_delta=-10.4).apply_image(img8)
    np.testing.assert_array_equal(out, np.rint(np.clip(img8 - 10.4, 0, 255)).astype(np.uint8))

    # saturation scales HSV's S (clipped to 1), leaves greys and the hue alone
    hsv_in = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    out = PhotometricTransform(saturation_alpha=0.6).apply_image(img)
    hsv_out = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
    np.testing.assert_allclose(hsv_out[..., 1], hsv_in[..., 1] * 0.6, atol=1e-3)
    np.testing.assert_allclose(hsv_out[..., 2], hsv_in[..., 2], atol=1e-3)
    grey = np.full((2, 2, 3), 77.0, np.float32)
    np.testing.assert_allclose(PhotometricTransform(saturation_alpha=1.5).apply_image(grey), grey)

    # hue is in degrees of the 0-360 circle, and the channel order decides which one is red
    red_rgb = np.array([[[255.0, 0.0, 0.0]]], np.float32)
    out = PhotometricTransform(hue_delta=60.0, image_format="RGB").apply_image(red_rgb)
    np.testing.assert_allclose(out, [[[255.0, 255.0, 0.0]]], atol=1e-3)  # yellow
    out = PhotometricTransform(hue_delta=-120.0, image_format="RGB").apply_image(red_rgb)
    np.testing.assert_allclose(out, [[[0.0, 0.0, 255.0]]], atol=1e-3)  # blue, wrapped
    red_bgr = red_rgb[..., ::-1].copy()
    out = PhotometricTransform(hue_delta=60.0, image_format="BGR").apply_image(red_bgr)
    np.testing.assert_allclose(out, [[[0.0, 255.0, 255.0]]], atol=1e-3)  # yellow in BGR


@pytest.mark.parametrize("contrast_last", [False, True])
def test_photometric_contrast_goes_before_or_after_the_hsv_step(contrast_last):
    img = _image(dtype=np.float32)
    params = dict(saturation_alpha=1.4, hue_delta=-11.0)
    contrast = PhotometricTransform(contrast_alpha=1.4)
    hsv = PhotometricTransform(**params)
    both = PhotometricTransform(contrast_alpha=1.4, contrast_last=contrast_last, **params)
    first, second = (hsv, contrast) if contrast_last else (contrast, hsv)
    expected = second.apply_image(first.apply_image(img))
    np.testing.assert_allclose(both.apply_image(img), expected, atol=1e-3)
    other = (contrast, hsv) if contrast_last else (hsv, contrast)
    assert not np.allclose(other[1].apply_image(other[0].apply_image(img)), expected, atol=1e-1)


def test_photometric_leaves_geometry_alone():
    tfm = PhotometricTransform(brightness_delta=5, hue_delta=3, channel_order=(1, 0, 2))
    coords = np.array([[1.5, 2.5], [10.0, 3.0]])
    np.testing.assert_array_equal(tfm.apply_coords(coords.copy()), coords)
    mask = np.eye(5, dtype=np.uint8)
    np.testing.assert_array_equal(tfm.apply_segmentation(mask), mask)
    assert isinstance(tfm.inverse(), NoOpTransform)
    with pytest.raises(ValueError, match="BGR"):
        PhotometricDistortion(image_format="YUV")


# ---------------------------------------------------------------- expand


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_expand_puts_the_image_where_the_boxes_say(dtype):
    np.random.seed(2)
    img = _image(30, 40, dtype=dtype)
    aug = Expand(fill=MEAN, prob=1.0)
    boxes = np.array([[3.0, 4.0, 20.0, 25.0], [0.0, 0.0, 40.0, 30.0]])
    mask = np.zeros((30, 40), np.uint8)
    mask[4:25, 3:20] = 1
    polygon = np.array([[3.0, 4.0], [20.0, 4.0], [20.0, 25.0], [3.0, 25.0]])
    for _ in range(10):
        tfm = aug.get_transform(img)
        assert isinstance(tfm, ExpandTransform)
        out = tfm.apply_image(img)
        ratio_h, ratio_w = out.shape[0] / 30, out.shape[1] / 40
        assert 1 <= ratio_h <= 4 and 1 <= ratio_w <= 4 and abs(ratio_h - ratio_w) < 0.1
        new = tfm.apply_box(boxes.copy()).astype(int)
        x0, y0, x1, y1 = new[0]
        np.testing.assert_array_equal(out[y0:y1, x0:x1], img[4:25, 3:20])
        x0, y0, x1, y1 = new[1]  # the whole image
        np.testing.assert_array_equal(out[y0:y1, x0:x1], img)
        outside = np.ones(out.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        fill = np.rint(MEAN) if dtype == np.uint8 else np.asarray(MEAN, np.float32)
        np.testing.assert_array_equal(out[outside], np.broadcast_to(fill, out[outside].shape))
        # polygons and bitmasks follow
        new_mask = tfm.apply_segmentation(mask)
        assert new_mask.shape == out.shape[:2] and new_mask.sum() == mask.sum()
        ys, xs = np.nonzero(new_mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(new[0])
        (new_poly,) = tfm.apply_polygons([polygon.copy()])
        np.testing.assert_allclose(new_poly.min(0), new[0][:2])
        np.testing.assert_allclose(new_poly.max(0), new[0][2:])
        np.testing.assert_array_equal(tfm.inverse().apply_image(out), img)


def test_expand_probability_and_ratio():
    np.random.seed(3)
    aug = Expand(fill=0.0)
    img = _image(20, 20)
    tfms = [aug.get_transform(img) for _ in range(1000)]
    expanded = [t for t in tfms if isinstance(t, ExpandTransform)]
    assert all(isinstance(t, (ExpandTransform, NoOpTransform)) for t in tfms)
    assert abs(len(expanded) / len(tfms) - 0.5) < 0.05
    sides = np.array([t.x0 + t.x1 + 20 for t in expanded]) / 20
    assert sides.min() >= 1.0 and sides.max() <= 4.0 and sides.max() > 3.8
    with pytest.raises(ValueError, match="ratio_range"):
        Expand(fill=0.0, ratio_range=(0.5, 2.0))


# ---------------------------------------------------------------- polygon clipping


def test_clip_polygon_keeps_the_part_inside_the_window():
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    inside = clip_polygon(square, -1, -1, 11, 11)
    assert _area(inside) == 100.0 and len(inside) == 4
    assert len(clip_polygon(square, 20, 20, 30, 30)) == 0
    part = clip_polygon(square, 2, 3, 5, 20)
    assert _area(part) == 3 * 7
    np.testing.assert_allclose(part.min(0), [2, 3])
    np.testing.assert_allclose(part.max(0), [5, 10])
    triangle = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert _area(clip_polygon(triangle, 5, 0, 10, 10)) == pytest.approx(12.5)
    # a U cut into its two arms keeps the area of both
    u_shape = np.array([[0, 0], [9, 0], [9, 9], [6, 9], [6, 3], [3, 3], [3, 9], [0, 9]], float)
    arms = clip_polygon(u_shape, 0, 5, 9, 9)
    assert _area(arms) == pytest.approx(2 * 3 * 4)


def test_clip_crop_transform_clips_polygons_like_the_rasterised_mask():
    u_shape = np.array([[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]])
    u_shape = u_shape.astype(float) + 2
    tfm = ClipCropTransform(5, 15, 25, 14, orig_w=40, orig_h=40)
    polygons = tfm.apply_polygons([u_shape])
    assert len(polygons) == 1
    rle = mask_util.frPyObjects([p.reshape(-1).tolist() for p in polygons], 14, 25)
    clipped = mask_util.decode(mask_util.merge(rle))
    full = mask_util.decode(mask_util.frPyObjects([u_shape.reshape(-1).tolist()], 40, 40)[0])
    cropped = tfm.apply_segmentation(full)
    assert cropped.shape == clipped.shape == (14, 25)
    assert np.abs(cropped.astype(int) - clipped).sum() <= 0.05 * cropped.sum()
    assert tfm.apply_polygons([u_shape + 100]) == []


# ---------------------------------------------------------------- min-IoU crop


def _boxes(rng, n, h, w):
    xy = rng.uniform(0, [w - 8, h - 8], size=(n, 2))
    wh = rng.uniform(4, [w, h], size=(n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1).astype(np.float32)


def test_min_iou_crop_accepts_only_crops_that_meet_the_threshold():
    np.random.seed(4)
    rng = np.random.default_rng(4)
    aug = MinIoURandomCrop()
    img = _image(60, 80)
    modes = set()
    for _ in range(300):
        boxes = _boxes(rng, int(rng.integers(1, 4)), 60, 80)
        tfm = aug.get_transform(img, boxes)
        modes.add(aug.mode)
        if aug.mode == 1:
            assert isinstance(tfm, NoOpTransform)
            continue
        assert isinstance(tfm, ClipCropTransform)
        crop = (tfm.x0, tfm.y0, tfm.x0 + tfm.w, tfm.y0 + tfm.h)
        assert _iou(crop, boxes).min() >= aug.mode - 1e-6
        assert box_centres_inside(boxes, *crop).any()
        assert 0 <= crop[0] < crop[2] <= 80 and 0 <= crop[1] < crop[3] <= 60
        assert tfm.w >= int(0.3 * 80) - 1 and tfm.h >= int(0.3 * 60) - 1
        assert 0.5 - 0.1 <= tfm.h / tfm.w <= 2 + 0.1
        assert tfm.apply_image(img).shape == (tfm.h, tfm.w, 3)
    assert modes >= {1.0, 0.0, 0.1, 0.3, 0.5}
    # a box covering most of the image can meet the strictest threshold
    strict = MinIoURandomCrop(min_ious=(0.9,))
    big = np.array([[2.0, 3.0, 78.0, 57.0]], np.float32)
    accepted = 0
    for _ in range(100):
        tfm = strict.get_transform(img, big)
        if strict.mode == 0.9:
            accepted += 1
            crop = (tfm.x0, tfm.y0, tfm.x0 + tfm.w, tfm.y0 + tfm.h)
            assert _iou(crop, big)[0] >= 0.9 - 1e-6  # float32 IoU inside the augmentation
    assert accepted > 10


def test_min_iou_crop_none_mode_is_the_identity_and_no_boxes_means_no_crop():
    np.random.seed(5)
    aug = MinIoURandomCrop()
    img = _image()
    boxes = np.array([[5.0, 5.0, 30.0, 30.0]], np.float32)
    seen = 0
    for _ in range(100):
        tfm = aug.get_transform(img, boxes)
        if aug.mode == 1:
            seen += 1
            assert isinstance(tfm, NoOpTransform)
            np.testing.assert_array_equal(tfm.apply_image(img), img)
            np.testing.assert_array_equal(tfm.apply_box(boxes), boxes)
    assert seen > 0
    assert isinstance(aug.get_transform(img, None), NoOpTransform)
    # an image without boxes may still be cropped
    empty = np.zeros((0, 4), np.float32)
    kinds = {type(aug.get_transform(img, empty)) for _ in range(50)}
    assert kinds == {NoOpTransform, ClipCropTransform}


# ---------------------------------------------------------------- the mapper


class _Recording(T.Augmentation):
    """Wraps an augmentation and keeps the last transform it returned."""

    def __init__(self, aug):
        self.aug = aug
        self.last = None

    def get_transform(self, image, boxes):
        self.last = self.aug.get_transform(image, boxes)
        return self.last


def _rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _dataset_dict(tmp_path, rle=False):
    h, w = 60, 80
    path = tmp_path / "image.png"
    Image.fromarray(_image(h, w, seed=7)).save(path)
    boxes = [(4, 6, 30, 40), (35, 10, 70, 55), (50, 2, 78, 20), (10, 42, 40, 58), (60, 40, 62, 43)]
    annotations = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        segm = [_rect(x0, y0, x1, y1)]
        if i == 1:  # a triangle whose box is still tight
            segm = [[x0, y0, x1, y0, x0, y1]]
        if rle and i == 2:
            segm = mask_util.frPyObjects(segm, h, w)[0]
        annotations.append(
            {
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": i,
                "segmentation": segm,
            }
        )
    crowd = dict(annotations[0], category_id=9, iscrowd=1)
    return {
        "file_name": str(path),
        "height": h,
        "width": w,
        "image_id": 0,
        "annotations": annotations + [crowd],
    }


def test_mapper_drops_exactly_the_instances_whose_centre_left_the_crop(tmp_path):
    np.random.seed(6)
    record = _dataset_dict(tmp_path)
    crop = _Recording(MinIoURandomCrop())
    mapper = SSDDatasetMapper(
        augmentations=[crop], image_format="BGR", use_instance_mask=True, min_box_size=4
    )
    boxes = np.array([a["bbox"] for a in record["annotations"][:4]], np.float32)
    boxes[:, 2:] += boxes[:, :2]
    cropped = 0
    for _ in range(60):
        out = mapper(record)
        kept = sorted(out["instances"].gt_classes.tolist())
        assert 4 not in kept and 9 not in kept  # a 2 x 3 px box and a crowd box
        if isinstance(crop.last, NoOpTransform):
            assert kept == [0, 1, 2, 3]
            continue
        cropped += 1
        t = crop.last
        inside = box_centres_inside(boxes, t.x0, t.y0, t.x0 + t.w, t.y0 + t.h)
        assert kept == np.flatnonzero(inside).tolist()
        assert out["image"].shape == (3, t.h, t.w)
        assert _iou((t.x0, t.y0, t.x0 + t.w, t.y0 + t.h), boxes).min() >= crop.aug.mode - 1e-6
    assert cropped > 20


def test_centres_inside_image_follows_the_transforms():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]])
    tfms = T.TransformList(
        [ClipCropTransform(6, 0, 30, 30), T.ResizeTransform(30, 30, 60, 60), T.HFlipTransform(60)]
    )
    # centres (5, 5) and (30, 25): the first is left of the crop, the second inside
    assert centres_inside_image(boxes, tfms, (60, 60)).tolist() == [False, True]
    assert centres_inside_image(np.zeros((0, 4)), tfms, (60, 60)).shape == (0,)


@pytest.mark.parametrize("mask_format", ["polygon", "bitmask"])
def test_full_ssd_pipeline_keeps_boxes_and_masks_consistent(tmp_path, mask_format):
    np.random.seed(8)
    record = _dataset_dict(tmp_path, rle=mask_format == "bitmask")
    augs = ssd_augmentations((40, 48), MEAN, image_format="BGR")
    mapper = SSDDatasetMapper(
        augmentations=augs,
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format=mask_format,
        min_box_size=4,
    )
    counts = 0
    for _ in range(40):
        out = mapper(record)
        image, inst = out["image"], out["instances"]
        assert image.shape == (3, 40, 48) and image.dtype.is_floating_point
        assert 0 <= image.min() and image.max() <= 255 + 1e-3  # bilinear resize in float32
        assert len(inst) <= 4 and 4 not in inst.gt_classes.tolist()
        counts += len(inst)
        if len(inst) == 0:
            continue
        boxes = inst.gt_boxes.tensor.numpy()
        mask_boxes = inst.gt_masks.get_bounding_boxes().tensor.numpy()
        assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= 48) and np.all(boxes[:, 3] <= 40)
        # a mask never leaves its box; rectangles (every class but 1) fill it
        assert np.all(mask_boxes[:, :2] >= boxes[:, :2] - 1)
        assert np.all(mask_boxes[:, 2:] <= boxes[:, 2:] + 1)
        rect = inst.gt_classes.numpy() != 1
        np.testing.assert_allclose(mask_boxes[rect], boxes[rect], atol=1.0)
    assert counts > 40


def test_mapper_at_test_time_returns_the_image_only(tmp_path):
    record = _dataset_dict(tmp_path)
    mapper = SSDDatasetMapper(
        is_train=False, augmentations=[T.Resize((32, 32))], image_format="RGB", float_image=False
    )
    out = mapper(record)
    assert "annotations" not in out and "instances" not in out
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.uint8
