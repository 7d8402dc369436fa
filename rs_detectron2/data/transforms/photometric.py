"""SSD-style photometric distortion (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016,
section 2.2 "Data augmentation"), as used by the YOLACT and aLRP recipes (docs/models.md).

Pixel values are on the 0-255 scale whatever the dtype. Hue is measured in degrees on the 0-360
circle (the convention of HSV on float images); the default ``hue_delta=18`` is therefore a shift
of at most one twentieth of the colour circle.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from fvcore.transforms.transform import NoOpTransform, Transform

from detectron2.data import transforms as T

__all__ = ["PhotometricDistortion", "PhotometricTransform"]

_HSV_CODES = {
    "BGR": (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR),
    "RGB": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
}


def _check_format(image_format: str) -> None:
    if image_format not in _HSV_CODES:
        raise ValueError(f"image_format must be 'BGR' or 'RGB', got {image_format!r}")


class PhotometricTransform(Transform):
    """A deterministic photometric distortion; geometry (boxes, polygons, masks) is unchanged.

    The steps, in order: add ``brightness_delta``; multiply by ``contrast_alpha`` (here, unless
    ``contrast_last``); in HSV, multiply the saturation by ``saturation_alpha`` and rotate the hue
    by ``hue_delta`` degrees; multiply by ``contrast_alpha`` (here, if ``contrast_last``); reorder
    the channels by ``channel_order``. Neutral values (0, 1, None) skip their step. The image is
    clipped to [0, 255] after every step, as a uint8 pipeline would, so that the HSV conversion
    only ever sees valid colours.
    """

    def __init__(
        self,
        brightness_delta: float = 0.0,
        contrast_alpha: float = 1.0,
        contrast_last: bool = False,
        saturation_alpha: float = 1.0,
        hue_delta: float = 0.0,
        channel_order: Optional[Tuple[int, ...]] = None,
        image_format: str = "BGR",
    ):
        """
        Args:
            brightness_delta: added to every pixel value.
            contrast_alpha: every pixel value is multiplied by it.
            contrast_last: apply the contrast after the HSV step instead of before it.
            saturation_alpha: the HSV saturation (in [0, 1]) is multiplied by it, then clipped.
            hue_delta: degrees added to the HSV hue, modulo 360.
            channel_order: a permutation of the channel axis, or None to keep it.
            image_format: channel order of the images, "BGR" or "RGB" (the hue and saturation
                steps need to know which channel is red).
        """
        super().__init__()
        _check_format(image_format)
        self._set_attributes(locals())

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if self.contrast_alpha == 1.0:
            return img
        return np.clip(img * np.float32(self.contrast_alpha), 0.0, 255.0)

    def _hsv(self, img: np.ndarray) -> np.ndarray:
        if self.saturation_alpha == 1.0 and self.hue_delta == 0.0:
            return img
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"saturation and hue need a 3-channel image, got shape {img.shape}")
        to_hsv, from_hsv = _HSV_CODES[self.image_format]
        # On float32 input OpenCV gives H in [0, 360), S in [0, 1] and V on the input's scale.
        hsv = cv2.cvtColor(img, to_hsv)
        hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(self.saturation_alpha), 0.0, 1.0)
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(self.hue_delta), 360.0)
        return np.clip(cv2.cvtColor(hsv, from_hsv), 0.0, 255.0)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """
        Args:
            img: (H, W, C) or (H, W) image, uint8 or float, values on the 0-255 scale.

        Returns:
            The distorted image, same shape and dtype, values in [0, 255] (rounded for uint8).
        """
        out = np.array(img, dtype=np.float32)
        if self.brightness_delta != 0.0:
            out = np.clip(out + np.float32(self.brightness_delta), 0.0, 255.0)
        if not self.contrast_last:
            out = self._contrast(out)
        out = self._hsv(np.ascontiguousarray(out))
        if self.contrast_last:
            out = self._contrast(out)
        if self.channel_order is not None:
            out = out[..., list(self.channel_order)]
        if img.dtype == np.uint8:
            out = np.rint(out)
        return out.astype(img.dtype, copy=False)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()


class PhotometricDistortion(T.Augmentation):
    """SSD's photometric distortion: random brightness, contrast, saturation, hue and channel
    order, each applied independently with probability ``prob``.

    The contrast step goes before the HSV step or after it with equal chance (SSD's two orders).
    Returns a :class:`PhotometricTransform`, which leaves boxes and masks unchanged.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: float = 18.0,
        prob: float = 0.5,
        image_format: str = "BGR",
    ):
        """
        Args:
            brightness_delta: the brightness shift is uniform in [-delta, delta] (0-255 scale).
            contrast_range: the contrast factor is uniform in this range.
            saturation_range: the saturation factor is uniform in this range.
            hue_delta: the hue shift is uniform in [-delta, delta] degrees (0-360 circle).
            prob: probability of each of the five steps, drawn independently.
            image_format: channel order of the images, "BGR" or "RGB" (the mapper's format).
        """
        super().__init__()
        _check_format(image_format)
        self._init(locals())

    def _maybe(self, low: float, high: float, neutral: float) -> float:
        if self._rand_range() < self.prob:
            return float(self._rand_range(low, high))
        return neutral

    def get_transform(self, image: np.ndarray) -> PhotometricTransform:
        """
        Args:
            image: (H, W, C) or (H, W) image; only its shape is read.

        Returns:
            The drawn :class:`PhotometricTransform`.
        """
        brightness = self._maybe(-self.brightness_delta, self.brightness_delta, 0.0)
        contrast = self._maybe(*self.contrast_range, 1.0)
        contrast_last = bool(self._rand_range() < 0.5)
        saturation = self._maybe(*self.saturation_range, 1.0)
        hue = self._maybe(-self.hue_delta, self.hue_delta, 0.0)
        channel_order = None
        if image.ndim == 3 and self._rand_range() < self.prob:
            channel_order = tuple(int(c) for c in np.random.permutation(image.shape[2]))
        return PhotometricTransform(
            brightness_delta=brightness,
            contrast_alpha=contrast,
            contrast_last=contrast_last,
            saturation_alpha=saturation,
            hue_delta=hue,
            channel_order=channel_order,
            image_format=self.image_format,
        )
