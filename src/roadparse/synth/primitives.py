"""Geometry of scene primitives as exact pixel masks (pure numpy/OpenCV, no randomness).

Each primitive is rasterised once into a boolean mask; the painter uses the same mask
for the paint and for the label, so labels line up with pixels exactly. A pixel belongs
to a shape when its centre does (no anti-aliasing).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class RoadAxis:
    """A gently curved road centre line in frame pixels.

    ``u`` runs along the road, ``v`` across it (both in pixels from ``origin``);
    ``v = -dx sin(angle) + dy cos(angle) + curvature * u**2``.
    """

    origin: tuple[float, float]
    angle: float
    curvature: float = 0.0

    def coords(self, height: int, width: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Returns (u, v): (H', W') float32 road coordinates of every ``step``-th pixel centre."""
        cos, sin = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        dx = np.arange(0, width, step, dtype=np.float32)[None, :] - np.float32(self.origin[0])
        dy = np.arange(0, height, step, dtype=np.float32)[:, None] - np.float32(self.origin[1])
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        v += np.float32(self.curvature) * u * u
        return u, v

    def to_xy(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Returns frame (x, y) of road coordinates (u, v); inverse of ``coords``."""
        u = np.asarray(u, dtype=np.float64)
        straight_v = np.asarray(v, dtype=np.float64) - self.curvature * u * u
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        x = self.origin[0] + u * cos - straight_v * sin
        y = self.origin[1] + u * sin + straight_v * cos
        return x, y


def band_mask(v: np.ndarray, v0: float, v1: float) -> np.ndarray:
    """Returns (H, W) bool: pixels with ``v0 <= v < v1`` (a strip along the road)."""
    return (v >= np.float32(v0)) & (v < np.float32(v1))


def dashed_mask(
    u: np.ndarray, v: np.ndarray, v0: float, v1: float, dash: float, gap: float, phase: float
) -> np.ndarray:
    """Returns (H, W) bool: a dashed strip, dashes ``dash`` long every ``dash + gap`` along u."""
    period = np.float32(dash + gap)
    along = np.mod(u - np.float32(phase), period)
    return band_mask(v, v0, v1) & (along < np.float32(dash))


def disc_mask(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Returns (H, W) bool: pixel centres within ``radius`` of ``center`` = (x, y).

    Its area is pi * radius**2 up to the pixel-grid error (well under 1% from 20 px).
    """
    height, width = shape
    cx, cy = center
    x0, x1 = max(0, int(np.floor(cx - radius))), min(width, int(np.ceil(cx + radius)) + 1)
    y0, y1 = max(0, int(np.floor(cy - radius))), min(height, int(np.ceil(cy + radius)) + 1)
    mask = np.zeros(shape, dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] - cy
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] - cx
    mask[y0:y1, x0:x1] = xs * xs + ys * ys <= radius * radius
    return mask


def ring_mask(
    shape: tuple[int, int], center: tuple[float, float], inner: float, outer: float
) -> np.ndarray:
    """Returns (H, W) bool: pixel centres with ``inner < distance <= outer`` from ``center``."""
    return disc_mask(shape, center, outer) & ~disc_mask(shape, center, inner)


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Returns (H, W) bool: the filled polygon with (N, 2) float vertices (x, y)."""
    canvas = np.zeros(shape, dtype=np.uint8)
    # 4 fractional bits keep sub-pixel vertex positions when rasterising.
    fixed = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [fixed.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def rotated_rect(center: tuple[float, float], size: tuple[float, float], angle: float) -> np.ndarray:
    """Returns (4, 2) float64 corners of a ``size`` = (length, width) rectangle rotated by ``angle``."""
    cos, sin = np.cos(angle), np.sin(angle)
    half_l, half_w = size[0] / 2.0, size[1] / 2.0
    local = np.array([[-half_l, -half_w], [half_l, -half_w], [half_l, half_w], [-half_l, half_w]])
    rotation = np.array([[cos, -sin], [sin, cos]])
    return local @ rotation.T + np.asarray(center, dtype=np.float64)


def polyline_mask(shape: tuple[int, int], points: np.ndarray, thickness: int) -> np.ndarray:
    """Returns (H, W) bool: an open polyline of (N, 2) vertices (x, y) ``thickness`` px wide
    (exactly for odd thickness, one more for even), with round caps and joints."""
    canvas = np.zeros(shape, dtype=np.uint8)
    fixed = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)
    # OpenCV draws thickness t as t + 1 (even t) or t + 2 (odd t) pixels across.
    cv2.polylines(
        canvas, [fixed.reshape(-1, 1, 2)], False, 1, thickness=max(1, int(thickness) - 1),
        lineType=cv2.LINE_8, shift=4,
    )
    return canvas.astype(bool)


def meander(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length: float,
    step: float,
    wiggle: float = 0.25,
) -> np.ndarray:
    """Returns (N, 2) float64 vertices of a meandering crack-like path from ``start``.

    The heading drifts by a persistent random turn plus ``wiggle`` radians of jitter per step.
    """
    n_steps = max(2, int(length / step))
    turn = rng.normal(0.0, 0.04, size=n_steps).cumsum() * 0.5
    jitter = rng.normal(0.0, wiggle, size=n_steps)
    headings = heading + turn + jitter
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * step
    return np.vstack([np.asarray(start, dtype=np.float64), start + steps.cumsum(axis=0)])
