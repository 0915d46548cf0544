"""Ragged markings of known centre-line length and width, and ragged edges for label maps: test and benchmark
data for centre-line measurements (:mod:`roadparse.centrelines`), shaped like predictions' edges.

Randomness comes from the ``np.random.Generator`` passed in; sizes are in pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def edge_noise(rng: np.random.Generator, count: int, amplitude: float, correlation: float) -> np.ndarray:
    """Returns (count,) zero-mean offsets of a ragged edge in pixels: smooth noise of std ``amplitude`` correlated
    over ``correlation`` samples, plus pixel jitter of a third of that."""
    pad = int(4 * correlation) + 1
    smooth = ndimage.gaussian_filter1d(rng.normal(size=count + 2 * pad), correlation)[pad : pad + count]
    noise = smooth * (amplitude / (smooth.std() + 1e-12)) + rng.normal(scale=amplitude / 3.0, size=count)
    return noise - noise.mean()


def ragged_marking(rng: np.random.Generator, length_px: float, width_px: float, radius_px: float | None = None,
                   angle: float = 0.3, roughness: float = 0.1) -> np.ndarray:
    """Returns an (H, W) bool marking of known centre-line length and width whose four edges are ragged.

    Straight (``radius_px`` None, along ``angle``) or an arc of ``radius_px`` starting at
    ``angle``; each edge moves by zero-mean noise of std ``roughness`` × width correlated over
    half a width (:func:`edge_noise`), so the area stays length × width on average. A pixel
    belongs to the marking when its centre does.
    """
    count, across = int(length_px) + 1, int(width_px) + 1
    correlation, amplitude = max(2.0, 0.5 * width_px), roughness * width_px
    left, right = edge_noise(rng, count, amplitude, correlation), edge_noise(rng, count, amplitude, correlation)
    start, end = edge_noise(rng, across, amplitude, correlation), edge_noise(rng, across, amplitude, correlation)
    extent = (length_px / 2 if radius_px is None else radius_px) + width_px + 20
    size = int(2 * extent)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xx - size / 2, yy - size / 2
    if radius_px is None:
        along = dx * np.cos(angle) + dy * np.sin(angle) + length_px / 2
        offset = -dx * np.sin(angle) + dy * np.cos(angle)
    else:
        theta = np.mod(np.arctan2(dy, dx) - angle, 2 * np.pi)
        theta = np.where(theta > np.pi + length_px / radius_px / 2, theta - 2 * np.pi, theta)
        along, offset = theta * radius_px, np.hypot(dx, dy) - radius_px
    at = np.clip(np.round(along).astype(int), 0, count - 1)
    side = np.clip(np.round(offset + width_px / 2).astype(int), 0, across - 1)
    inside = (offset >= -width_px / 2 - left[at]) & (offset <= width_px / 2 + right[at])
    return inside & (along >= -start[side]) & (along <= length_px + end[side])


def ragged_labels(rng: np.random.Generator, labels: np.ndarray, class_ids: tuple[int, ...], amplitude: float,
                  correlation: float, background: int, jitter: float = 0.5) -> np.ndarray:
    """Returns (H, W) uint8 labels whose regions of ``class_ids`` have ragged edges, as a prediction's would.

    Each class's edge moves by a noise field of std ``amplitude`` pixels, smooth over
    ``correlation`` pixels, plus independent pixel noise of std ``jitter`` pixels (the signed
    distance to the edge plus the noise decides); pixels a class loses become ``background``.
    """
    out = labels.copy()
    for class_id in class_ids:
        mask = labels == class_id
        if not mask.any():
            continue
        signed = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
        field = ndimage.gaussian_filter(rng.normal(size=mask.shape).astype(np.float32), correlation)
        field *= amplitude / (float(field.std()) + 1e-12)
        field += rng.normal(scale=jitter, size=mask.shape).astype(np.float32)
        grown = signed + field > 0
        out[mask & ~grown] = background
        out[grown & ~mask & (labels == background)] = class_id
    return out
