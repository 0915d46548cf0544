"""Pictures for the review page, as pure array functions: masks in context, tiles, overlays.

Every function takes (H, W, 3) uint8 RGB tiles and (H, W) bool masks and returns a
new uint8 image; nothing here reads files.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

OUTLINE_RGB = (255, 0, 255)
"""Magenta: rare on roads (the gallery's outline colour)."""
PAD_RGB = (32, 32, 36)
"""Outside the tile, in windows that reach past its border."""
UNLABELLED_RGB = (24, 24, 24)


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Returns the (H, W) bool inner border of a (H, W) bool mask, ``thickness`` pixels wide."""
    mask = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    eroded = cv2.erode(mask, kernel, iterations=thickness, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (mask > 0) & (eroded == 0)


def interior_point(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> tuple[int, int]:
    """Returns the (x, y) pixel of a mask farthest from its border: its pole of inaccessibility.

    The maximum of the mask's distance transform, so the point lies inside the mask whatever
    its shape (an L, a ring, a curved road: their box centre can lie outside). Among points
    within a pixel of the maximum (a strip of even width has a whole ridge of them), the one
    nearest the mask's centroid. A mask with no pixel in ``bbox`` gives the box centre.

    Args:
        mask: (H, W) bool mask.
        bbox: (x0, y0, x1, y1) end-exclusive box of the mask (the transform runs on it only).
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    x0, y0 = max(0, x0), max(0, y0)
    crop = mask[y0:y1, x0:x1]
    if not crop.any():
        return (x0 + x1) // 2, (y0 + y1) // 2
    padded = np.pad(crop, 1).astype(np.uint8)  # the box edge is the mask's border too
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ys, xs = np.nonzero((distance >= distance.max() - 1.0) & crop)
    inside_ys, inside_xs = np.nonzero(crop)
    centroid_y, centroid_x = inside_ys.mean(), inside_xs.mean()
    nearest = int(np.argmin((ys - centroid_y) ** 2 + (xs - centroid_x) ** 2))
    return x0 + int(xs[nearest]), y0 + int(ys[nearest])


def context_window(
    image: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int], side: int, out: int
) -> np.ndarray:
    """Returns the (out, out, 3) uint8 window of ``side`` tile pixels centred inside a mask, outlined.

    The window is centred on the mask's :func:`interior_point`, so it shows the member itself
    even when the member is larger than the window and its box centre lies outside it (a ring,
    an L-shaped road). It has the same ground size for every mask (``side`` px), so sizes
    compare across thumbnails; parts outside the tile are PAD_RGB. The outline is drawn after
    resizing so it stays one or two display pixels wide at any scale.

    Args:
        image: (H, W, 3) uint8 tile.
        mask: (H, W) bool mask of the member.
        bbox: (x0, y0, x1, y1) end-exclusive box of the mask.
        side: window side in tile pixels (a fixed ground size / the ground sampling distance).
        out: output side in display pixels.
    """
    height, width = image.shape[:2]
    centre_x, centre_y = interior_point(mask, bbox)
    left, top = centre_x - side // 2, centre_y - side // 2
    window = np.empty((side, side, 3), np.uint8)
    window[:] = PAD_RGB
    inside = np.zeros((side, side), bool)
    sx0, sy0, sx1, sy1 = max(0, left), max(0, top), min(width, left + side), min(height, top + side)
    if sx1 > sx0 and sy1 > sy0:
        window[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
        inside[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = mask[sy0:sy1, sx0:sx1]
    return _outlined(window, inside, out)


def _outlined(window: np.ndarray, inside: np.ndarray, out: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if window.shape[0] > out else cv2.INTER_NEAREST
    small = cv2.resize(window, (out, out), interpolation=interpolation)
    small_mask = cv2.resize(inside.astype(np.uint8), (out, out), interpolation=cv2.INTER_NEAREST) > 0
    if not small_mask.any() and inside.any():  # thinner than a display pixel: mark where it is
        ys, xs = np.nonzero(inside)
        small_mask[(ys * out) // inside.shape[0], (xs * out) // inside.shape[1]] = True
    small[outline(small_mask, 2 if out >= 128 else 1)] = OUTLINE_RGB
    return small


def highlight_tile(
    image: np.ndarray, cluster_masks: list[np.ndarray], current: np.ndarray | None, out: int
) -> np.ndarray:
    """Returns the tile (long side ``out``) with a cluster's masks tinted and outlined.

    Everything outside the cluster is dimmed; ``current`` (the hovered member) is outlined
    in white on top so it can be found among the others.
    """
    union = np.zeros(image.shape[:2], bool)
    for mask in cluster_masks:
        union |= mask
    shown = image.astype(np.float32)
    shown[~union] *= 0.45
    tint = np.array(OUTLINE_RGB, np.float32)
    shown[union] = 0.75 * shown[union] + 0.25 * tint
    scale = out / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(shown.astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    for mask, colour in [(m, OUTLINE_RGB) for m in cluster_masks] + (
        [(current, (255, 255, 255))] if current is not None else []
    ):
        small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        small[outline(small_mask, 2)] = colour
    return small


def label_overlay(
    image: np.ndarray, label: np.ndarray, palette: np.ndarray, out: int, alpha: float = 0.55
) -> np.ndarray:
    """Returns the tile (long side ``out``) with a (H, W) uint8 label blended in its class colours.

    ``palette`` is (256, 3) uint8; unlabelled pixels (255) are darkened instead of coloured.
    """
    colours = palette[label].astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    unlabelled = label == 255
    blended[unlabelled] = 0.35 * image[unlabelled].astype(np.float32) + 0.65 * np.array(UNLABELLED_RGB)
    scale = out / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(blended.astype(np.uint8), size, interpolation=cv2.INTER_AREA)


def encode_image(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    """Returns a (H, W, 3) uint8 image encoded as JPEG (quality 88) or PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return buffer.getvalue()
