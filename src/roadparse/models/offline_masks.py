"""A mask generator that needs no model weights: Felzenszwalb's graph segmentation from scikit-image.

It stands in for SAM in the offline profiles and in tests. Segments are disjoint. The records
carry no model scores: ``predicted_iou`` and ``stability_score`` are ``None`` (written as JSON null).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from roadparse.io import rle as rle_io

log = logging.getLogger(__name__)


def segment_felzenszwalb(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """Returns the (H, W) int label map of Felzenszwalb's graph segmentation of an (H, W, 3) uint8 image."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=max(1, min_size))


def inner_point(mask: np.ndarray) -> list[float]:
    """Returns [x, y] of the mask pixel nearest the mask's centroid (inside even for curved masks)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return [float(xs[nearest]), float(ys[nearest])]


def label_map_to_records(labels: np.ndarray, min_area: int) -> list[dict[str, Any]]:
    """Returns one mask record per label of an (H, W) int label map with at least ``min_area`` pixels.

    Records are sorted by area, largest first; format as ``SamAutomaticMasks.generate``.
    """
    values, counts = np.unique(labels, return_counts=True)
    records = []
    for value, count in sorted(zip(values, counts, strict=True), key=lambda pair: -pair[1]):
        if count < max(1, min_area):
            continue
        mask = labels == value
        records.append(
            {
                "rle": rle_io.encode(mask),
                "bbox": list(rle_io.bbox_xyxy(mask)),
                "area": int(count),
                "predicted_iou": None,
                "stability_score": None,
                "point": inner_point(mask),
            }
        )
    return records


class OfflineMaskGenerator:
    """Felzenszwalb segments behind the mask-generator interface (``masks.generator: felzenszwalb``)."""

    def __init__(self, *, scale: float = 200.0, sigma: float = 0.5, min_size: int | None = None, min_mask_area: int = 3000):
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.min_mask_area = min_mask_area

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Returns the mask records of an (H, W, 3) uint8 image, largest segment first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        # Components under min_size are merged into a neighbour. At the area filter (the default)
        # every segment survives it, so no pixel is left unlabelled; a smaller min_size lets
        # textured ground (gravel) break into fragments that are merged into whichever larger
        # neighbour they touch, road included.
        min_size = self.min_size if self.min_size is not None else self.min_mask_area
        labels = segment_felzenszwalb(image, self.scale, self.sigma, min_size)
        return label_map_to_records(labels, self.min_mask_area)

    def generate_batch(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Returns the mask records of each image."""
        return [self.generate(image) for image in images]
