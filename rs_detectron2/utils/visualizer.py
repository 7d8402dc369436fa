"""Pictures of detections: a model's predictions and a dataset's ground truth drawn by Detectron2's
``Visualizer`` at a size whose labels read, and pictures put side by side under titles.

Images in and pictures out are H x W x 3 ``uint8`` numpy arrays in RGB order.
"""

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detectron2.utils.visualizer import Visualizer

__all__ = [
    "MAX_SCALE",
    "MIN_PICTURE_SIDE",
    "draw_ground_truth",
    "draw_prediction",
    "picture_scale",
    "prediction_picture",
    "side_by_side",
]

# Pictures are drawn at least this many pixels on their long side, so labels of small images read.
MIN_PICTURE_SIDE = 512
MAX_SCALE = 4.0


def picture_scale(height: int, width: int) -> float:
    """The ``Visualizer`` scale that draws an image at least MIN_PICTURE_SIDE on its long side."""
    return min(MAX_SCALE, max(1.0, MIN_PICTURE_SIDE / max(height, width)))


def draw_prediction(image_rgb: np.ndarray, instances, metadata) -> np.ndarray:
    """Boxes, masks, class names and scores of ``instances`` over ``image_rgb`` (H x W x 3 RGB);
    returns the RGB picture (scaled by :func:`picture_scale`)."""
    scale = picture_scale(*image_rgb.shape[:2])
    vis = Visualizer(image_rgb, metadata, scale=scale)
    return vis.draw_instance_predictions(instances).get_image()


def draw_ground_truth(image_rgb: np.ndarray, record: dict, metadata) -> np.ndarray:
    """The annotations of a Detectron2 dataset dict over ``image_rgb``, at the scale of
    :func:`draw_prediction`; returns the RGB picture."""
    scale = picture_scale(*image_rgb.shape[:2])
    vis = Visualizer(image_rgb, metadata, scale=scale)
    return vis.draw_dataset_dict(record).get_image()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """RGB pictures of equal height next to each other, each under its title, 8 px apart.

    Returns:
        np.ndarray: H' x W' x 3 uint8, RGB.
    """
    height = max(p.shape[0] for p in panels)
    band = max(20, height // 16)
    gap = 8
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height + band, width, 3), 255, dtype=np.uint8)
    x = 0
    for panel in panels:
        canvas[band : band + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = _font(int(band * 0.7))
    x = 0
    for panel, title in zip(panels, titles):
        draw.text((x + 4, band * 0.1), title, fill=(0, 0, 0), font=font)
        x += panel.shape[1] + gap
    return np.asarray(picture)


def prediction_picture(
    image_rgb: np.ndarray, instances, metadata, record: Optional[dict] = None
) -> np.ndarray:
    """The picture of one image's predictions (:func:`draw_prediction`); with the image's dataset
    dict ``record``, its ground truth beside (:func:`draw_ground_truth`), the two titled with
    their counts. Returns the RGB picture."""
    drawn = draw_prediction(image_rgb, instances, metadata)
    if record is None:
        return drawn
    truth = draw_ground_truth(image_rgb, record, metadata)
    count = len(record.get("annotations", []))
    return side_by_side(
        [drawn, truth], [f"prediction ({len(instances)})", f"ground truth ({count})"]
    )
