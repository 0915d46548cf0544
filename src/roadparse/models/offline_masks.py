"""Mask generators that need no model weights: graph-based superpixels from scikit-image.

They stand in for SAM in the offline demo and in tests. Segments are disjoint; with
``line_width`` set, thin dark lines (crack sealing, joints) are added as masks of their own on
top of the segments they cross, as SAM would propose them. The records carry no model scores:
``predicted_iou`` and ``stability_score`` are ``None`` (written as JSON null).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from roadparse.io import rle as rle_io

log = logging.getLogger(__name__)


def segment_felzenszwalb(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """Returns the (H, W) int label map of Felzenszwalb's graph segmentation of an (H, W, 3) uint8 image."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=max(1, min_size))


def segment_slic(image: np.ndarray, n_segments: int, sigma: float, merge_threshold: float) -> np.ndarray:
    """Returns the (H, W) int label map of SLIC superpixels whose neighbours of similar mean colour are merged.

    Args:
        image: (H, W, 3) uint8.
        n_segments: SLIC superpixels before merging.
        sigma: Gaussian smoothing before SLIC.
        merge_threshold: neighbours whose mean RGB colours differ by less than this are merged.
    """
    from skimage import graph
    from skimage.segmentation import slic

    superpixels = slic(image, n_segments=n_segments, compactness=10.0, sigma=sigma, start_label=0)
    rag = graph.rag_mean_color(image, superpixels)
    return graph.cut_threshold(superpixels, rag, merge_threshold)


def thin_dark_lines(image: np.ndarray, width: float, min_length: float, threshold: float) -> np.ndarray:
    """Returns the (H, W) int label map (0: none) of thin dark lines in an (H, W, 3) uint8 image.

    A morphological black-hat (closing minus image) with a disc wider than ``width`` px
    responds where the image is darker than its surroundings across less than that width.
    Pixels whose response exceeds the image's median by ``threshold`` robust standard
    deviations (1.4826 × MAD) are candidates; a connected group of them is a line when it
    spans at least ``min_length`` px and is on average no wider than ``width`` px
    (area / span). Sealed cracks and joints are such lines; their Felzenszwalb segment is
    usually the road around them.
    """
    from scipy import ndimage

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    side = max(5, int(round(width)) | 1)
    response = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    response = response.astype(np.float32)
    centre = float(np.median(response))
    spread = max(1.4826 * float(np.median(np.abs(response - centre))), 0.5)  # flat images: half a grey level
    components, _ = ndimage.label(response > centre + threshold * spread, structure=np.ones((3, 3)))
    lines = np.zeros(components.shape, np.int32)
    kept = 0
    for index, window in enumerate(ndimage.find_objects(components), start=1):
        if window is None:
            continue
        inside = components[window] == index
        span = max(window[0].stop - window[0].start, window[1].stop - window[1].start)
        if span < min_length or inside.sum() / span > width:
            continue
        kept += 1
        lines[window][inside] = kept
    return lines


def inner_point(mask: np.ndarray) -> list[float]:
    """Returns [x, y] of the mask pixel nearest the mask's centroid (inside even for curved masks)."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return [float(xs[nearest]), float(ys[nearest])]


def label_map_to_records(labels: np.ndarray, min_area: int, background: int | None = None) -> list[dict[str, Any]]:
    """Returns one mask record per label of an (H, W) int label map with at least ``min_area`` pixels.

    Records are sorted by area, largest first; format as ``SamAutomaticMasks.generate``.
    ``background``: a label value that is no mask (e.g. 0 of :func:`thin_dark_lines`).
    """
    values, counts = np.unique(labels, return_counts=True)
    records = []
    for value, count in sorted(zip(values, counts, strict=True), key=lambda pair: -pair[1]):
        if count < max(1, min_area) or value == background:
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
    """Superpixel masks (``felzenszwalb`` or ``slic``) behind the mask-generator interface."""

    METHODS = ("felzenszwalb", "slic")

    def __init__(
        self,
        method: str = "felzenszwalb",
        *,
        scale: float = 200.0,
        sigma: float = 0.5,
        min_size: int | None = None,
        n_segments: int = 400,
        merge_threshold: float = 20.0,
        min_mask_area: int = 3000,
        line_width: float | None = None,
        line_min_length: float = 80.0,
        line_threshold: float = 4.0,
    ):
        if method not in self.METHODS:
            raise ValueError(f"unknown offline mask method {method!r}; available: {', '.join(self.METHODS)}")
        self.method = method
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.n_segments = n_segments
        self.merge_threshold = merge_threshold
        self.min_mask_area = min_mask_area
        self.line_width = line_width
        self.line_min_length = line_min_length
        self.line_threshold = line_threshold

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Returns the mask records of an (H, W, 3) uint8 image: the segments largest first, then the lines (with ``line_width``)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if self.method == "felzenszwalb":
            # Components under min_size are merged into a neighbour. At the area filter (the default)
            # every segment survives it, so no pixel is left unlabelled; a smaller min_size lets
            # textured ground (gravel) break into fragments that are merged into whichever larger
            # neighbour they touch, road included.
            min_size = self.min_size if self.min_size is not None else self.min_mask_area
            labels = segment_felzenszwalb(image, self.scale, self.sigma, min_size)
        else:
            labels = segment_slic(image, self.n_segments, self.sigma, self.merge_threshold)
        records = label_map_to_records(labels, self.min_mask_area)
        if self.line_width is not None:  # lines are kept by length, not by the area filter (a 3 cm x 50 cm line is 150 cm²)
            lines = thin_dark_lines(image, self.line_width, self.line_min_length, self.line_threshold)
            records += label_map_to_records(lines, 1, background=0)
        return records

    def generate_batch(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Returns the mask records of each image."""
        return [self.generate(image) for image in images]
