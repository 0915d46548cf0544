"""A weight-free road finder: asphalt colour and texture statistics on the downscaled frame.

It needs no model and no download, so the demo and the tests can run the roi stage
on real pixels. It looks for pixels that are grey (low saturation), neither dark
shadow nor bright roof/marking (mid value) and smooth at this scale (low local
standard deviation), closes gaps left by lane markings and vehicles, and returns
the boxes of the largest connected regions.

Limits, by construction:

- Grey is not only asphalt: concrete roofs, car parks, dry bare soil and gravel
  shoulders pass the colour test and are found as "road" when they are large.
- Wet, very new (black) or brightly sunlit (pale) asphalt can fall outside the
  value band; strong shadows across the road split it into several regions.
- It returns boxes, not a road outline: a diagonal road gives a box that holds a
  lot of verge; downstream stages see that verge as "other".
- Thresholds are absolute (8-bit HSV), tuned on nadir daylight imagery; night,
  infrared or heavily colour-graded frames need other values.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class OfflineFinderSettings:
    """Thresholds of the offline road finder (8-bit HSV, fractions of the frame)."""

    max_saturation: int = 70
    """Asphalt is grey: HSV saturation at most this (0..255)."""
    min_value: int = 35
    """Darker pixels are deep shadow or water, not road (0..255)."""
    max_value: int = 215
    """Brighter pixels are markings, roofs or sky glare (0..255); markings are closed over."""
    max_texture: float = 30.0
    """Largest local standard deviation of grey (0..255) in a 9×9 window."""
    close_fraction: float = 0.04
    """Closing kernel side as a fraction of the long side: bridges markings and cars."""
    min_area_fraction: float = 0.02
    """Regions smaller than this fraction of the frame are dropped."""
    max_regions: int = 4
    """At most this many regions (the largest) become boxes."""


@dataclass(frozen=True)
class RoadRegions:
    """What the offline finder found on one downscaled frame."""

    mask: np.ndarray
    """(h, w) bool road mask after clean-up (only the kept regions)."""
    boxes: np.ndarray
    """(K, 4) float64 boxes (x0, y0, x1, y1) of the kept regions, largest first."""
    scores: np.ndarray
    """(K,) float64 share of each box covered by road pixels."""


def _local_std(grey: np.ndarray, size: int = 9) -> np.ndarray:
    grey = grey.astype(np.float32)
    mean = cv2.blur(grey, (size, size))
    mean_sq = cv2.blur(grey * grey, (size, size))
    return np.sqrt(np.clip(mean_sq - mean * mean, 0, None))


def asphalt_mask(image: np.ndarray, settings: OfflineFinderSettings | None = None) -> np.ndarray:
    """Returns the (h, w) bool per-pixel asphalt test before any clean-up.

    Args:
        image: (h, w, 3) uint8 RGB frame.
        settings: thresholds; defaults when None.
    """
    settings = settings or OfflineFinderSettings()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    saturation, value = hsv[..., 1], hsv[..., 2]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return (
        (saturation <= settings.max_saturation)
        & (value >= settings.min_value)
        & (value <= settings.max_value)
        & (_local_std(grey) <= settings.max_texture)
    )


def find_road(image: np.ndarray, settings: OfflineFinderSettings | None = None) -> RoadRegions:
    """Returns the road regions of a downscaled frame (mask, boxes, scores).

    Args:
        image: (h, w, 3) uint8 RGB frame, typically long side 1024.
        settings: thresholds; defaults when None.
    """
    settings = settings or OfflineFinderSettings()
    raw = asphalt_mask(image, settings).astype(np.uint8)
    height, width = raw.shape
    side = max(3, int(round(settings.close_fraction * max(height, width))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, side // 2 | 1),) * 2)
    cleaned = cv2.morphologyEx(raw, cv2.MORPH_OPEN, small)  # drop speckle before bridging
    cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cleaned, connectivity=8)
    min_area = settings.min_area_fraction * height * width
    order = sorted(range(1, count), key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    kept = [k for k in order if stats[k, cv2.CC_STAT_AREA] >= min_area][: settings.max_regions]
    mask = np.isin(labels, kept) if kept else np.zeros((height, width), dtype=bool)
    boxes, scores = [], []
    for k in kept:
        x, y = stats[k, cv2.CC_STAT_LEFT], stats[k, cv2.CC_STAT_TOP]
        w, h = stats[k, cv2.CC_STAT_WIDTH], stats[k, cv2.CC_STAT_HEIGHT]
        boxes.append((x, y, x + w, y + h))
        scores.append(stats[k, cv2.CC_STAT_AREA] / float(w * h))
    return RoadRegions(
        mask=mask,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.asarray(scores, dtype=np.float64),
    )
