"""Crop geometry: the square crop of a mask's box that the encoder sees (paper §3.2.2).

Arrays in, arrays out (no file I/O, no model): the embed stage cuts every mask of a tile
with :func:`crop_masks`, the review page shows one member's crop with :func:`crop_mask`,
and both give the same pixels.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

MIN_CROP_SIDE = 8
"""Boxes thinner than this (e.g. a 1x1 mask) are widened around their centre first."""
BACKGROUND_RGB = (124, 116, 104)
"""Grey for pixels outside the mask when ``mask_background`` is on: the ImageNet mean colour."""


class MaskWindows(Protocol):
    """A tile's masks, read one box at a time (``roadparse.mask_statistics.MaskStack``)."""

    def __len__(self) -> int: ...

    def window(self, index: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Returns the (y1 - y0, x1 - x0) bool pixels of mask ``index`` under ``box`` (x0, y0, x1, y1)."""
        ...


def padded_box(box: tuple[int, int, int, int], min_side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Returns ``box`` (x0, y0, x1, y1, end-exclusive) clipped to the image and widened to ``min_side``.

    A box thinner than ``min_side`` grows around its centre, shifted inward at the
    image border; it never exceeds the image.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = _widen(max(0, min(x0, width - 1)), max(1, min(x1, width)), min_side, width)
    y0, y1 = _widen(max(0, min(y0, height - 1)), max(1, min(y1, height)), min_side, height)
    return x0, y0, x1, y1


def _widen(lo: int, hi: int, min_side: int, limit: int) -> tuple[int, int]:
    hi = max(hi, lo + 1)
    side = min(max(hi - lo, min_side), limit)
    if hi - lo >= side:
        return lo, hi
    start = (lo + hi) // 2 - side // 2
    start = max(0, min(start, limit - side))
    return start, start + side


def resize_crop(window: np.ndarray, size: int) -> np.ndarray:
    """Returns the (size, size, 3) uint8 resize of an (h, w, 3) uint8 window, without keeping aspect
    (area averaging when it shrinks both sides, bilinear otherwise)."""
    shrink = window.shape[0] >= size and window.shape[1] >= size
    return cv2.resize(np.ascontiguousarray(window), (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def crop_mask(image: np.ndarray, box: tuple[int, int, int, int], size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Returns the (size, size, 3) uint8 crop of ``image`` under ``box``, resized without keeping aspect.

    Args:
        image: (H, W, 3) uint8 RGB tile.
        box: (x0, y0, x1, y1) end-exclusive, inside the image (see :func:`padded_box`).
        size: output side.
        mask: optional (H, W) bool; pixels outside it become BACKGROUND_RGB.
    """
    x0, y0, x1, y1 = box
    window = image[y0:y1, x0:x1]
    if mask is not None:
        window = np.where(mask[y0:y1, x0:x1, None], window, np.array(BACKGROUND_RGB, dtype=np.uint8))
    return resize_crop(window, size)


def crop_masks(image: np.ndarray, stack: MaskWindows, boxes: np.ndarray, size: int, mask_background: bool) -> np.ndarray:
    """Returns the (n, size, size, 3) uint8 crops of every mask of ``stack``, cut under ``boxes``.

    The same pixels as :func:`crop_mask` on each mask's :func:`padded_box` of ``boxes``,
    with only each box's window of the mask read (never a whole tile per mask).

    Args:
        image: (H, W, 3) uint8 RGB tile.
        stack: the tile's n masks.
        boxes: (n, 4) int boxes (x0, y0, x1, y1) as recorded for the masks.
        size: crop side.
        mask_background: grey out the pixels of each box outside its mask.
    """
    height, width = image.shape[:2]
    crops = np.empty((len(stack), size, size, 3), np.uint8)
    grey = np.array(BACKGROUND_RGB, dtype=np.uint8)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes.tolist()):
        x0, y0, x1, y1 = padded_box((bx0, by0, bx1, by1), MIN_CROP_SIDE, width, height)
        window = image[y0:y1, x0:x1]
        if mask_background:
            window = np.where(stack.window(i, (x0, y0, x1, y1))[..., None], window, grey)
        crops[i] = resize_crop(window, size)
    return crops
