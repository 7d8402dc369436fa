"""Polygon geometry of the shapes dataset: class outlines, clipping to the image, area and the
pycocotools rasterisation (the one Detectron2 and COCO evaluation use)."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from .spec import SHAPES_CLASSES

__all__ = ["UNIT_OUTLINES", "unit_outline", "clip_to_rect", "dedupe", "shoelace", "rasterize"]

Point = Tuple[float, float]


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _cross() -> np.ndarray:
    w = 0.32
    pts = [(w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1)]
    pts += [(-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1), (w, 1)]
    return np.array(pts, dtype=np.float64)


def _star() -> np.ndarray:
    outer = _regular(5, -np.pi / 2)
    inner = 0.45 * _regular(5, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(10, 2)


def _crescent() -> np.ndarray:
    # Unit disc minus a unit disc centred at (d, 0): outer arc on the left, inner arc back.
    d = 0.7
    y0 = math.sqrt(1.0 - d * d / 4.0)
    t0 = math.atan2(y0, d / 2.0)  # angle of the upper intersection on the outer circle
    outer_t = np.linspace(t0, 2.0 * np.pi - t0, 20)
    outer = np.stack([np.cos(outer_t), np.sin(outer_t)], axis=1)
    a0 = math.atan2(y0, -d / 2.0)  # same point seen from the inner circle's centre
    inner_t = np.linspace(2.0 * np.pi - a0, a0, 14)[1:-1]
    inner = np.stack([d + np.cos(inner_t), np.sin(inner_t)], axis=1)
    return np.concatenate([outer, inner], axis=0) - np.array([0.3, 0.0])


_OUTLINES: Dict[str, Callable[[], np.ndarray]] = {
    "circle": lambda: _regular(32),
    "square": lambda: _regular(4, np.pi / 4),
    "triangle": lambda: _regular(3, -np.pi / 2),
    "hexagon": lambda: _regular(6),
    "ellipse": lambda: _regular(32) * np.array([1.0, 0.55]),
    "cross": _cross,
    "star": _star,
    "crescent": _crescent,
}


def unit_outline(name: str) -> np.ndarray:
    """Outline (P, 2) of class ``name`` around the origin, circumradius about 1, before scaling
    and rotation. Circles and ellipses are 32-gons. Raises ``KeyError`` for an unknown name."""
    return _OUTLINES[name]()


UNIT_OUTLINES: Dict[str, np.ndarray] = {name: unit_outline(name) for name in SHAPES_CLASSES}
"""Class name -> :func:`unit_outline`, computed once."""


def _clip_half_plane(
    pts: List[Point], inside: Callable[[Point], bool], cut: Callable[[Point, Point], Point]
) -> List[Point]:
    """One Sutherland-Hodgman pass: keep the part of a closed polygon where ``inside`` holds."""
    out = []
    for i in range(len(pts)):
        cur, prev = pts[i], pts[i - 1]
        cin, pin = inside(cur), inside(prev)
        if cin:
            if not pin:
                out.append(cut(prev, cur))
            out.append(cur)
        elif pin:
            out.append(cut(prev, cur))
    return out


def _x_cut(xc: float) -> Callable[[Point, Point], Point]:
    def cut(p: Point, q: Point) -> Point:
        t = (xc - p[0]) / (q[0] - p[0])
        return (xc, p[1] + t * (q[1] - p[1]))

    return cut


def _y_cut(yc: float) -> Callable[[Point, Point], Point]:
    def cut(p: Point, q: Point) -> Point:
        t = (yc - p[1]) / (q[1] - p[1])
        return (p[0] + t * (q[0] - p[0]), yc)

    return cut


def clip_to_rect(poly: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon (P, 2) to [0, width] x [0, height].

    Returns the clipped polygon (Q, 2), float64; Q = 0 when nothing is left.
    """
    pts = [tuple(p) for p in poly.tolist()]
    passes: Sequence[Tuple[Callable[[Point], bool], Callable[[Point, Point], Point]]] = (
        (lambda p: p[0] >= 0.0, _x_cut(0.0)),
        (lambda p: p[0] <= width, _x_cut(width)),
        (lambda p: p[1] >= 0.0, _y_cut(0.0)),
        (lambda p: p[1] <= height, _y_cut(height)),
    )
    for inside, cut in passes:
        if not pts:
            break
        pts = _clip_half_plane(pts, inside, cut)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def dedupe(poly: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicate vertices (including last == first) of a polygon (P, 2)."""
    if len(poly) == 0:
        return poly
    keep = np.any(poly != np.roll(poly, 1, axis=0), axis=1)
    if not keep.any():
        return poly[:1]
    return poly[keep]


def shoelace(poly: np.ndarray) -> float:
    """Area of a simple polygon (P, 2) by the shoelace formula (non-negative)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def rasterize(flat: List[float], height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of one COCO polygon ``[x0, y0, x1, y1, ...]`` rasterised by
    pycocotools."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([flat], height, width)
    return mask_utils.decode(rles)[:, :, 0].astype(bool)
