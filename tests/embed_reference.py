"""The embed stage's per-mask crop and statistics code as it was before the per-tile rewrite
(``roadparse.crops``, ``roadparse.mask_statistics``): one mask at a time, each reading its whole
tile. The reference the vectorised code is compared with (tests/test_mask_statistics.py)."""

from __future__ import annotations

import cv2
import numpy as np

TEXTURE_SCALES_CM = (0.5, 1.0, 2.0, 4.0, 8.0)
TEXTURE_DIMS = len(TEXTURE_SCALES_CM)
SHAPE_DIMS = 3

MIN_CROP_SIDE = 8
"""Boxes thinner than this (e.g. a 1x1 mask) are widened around their centre first."""
BACKGROUND_RGB = (124, 116, 104)
"""Grey for pixels outside the mask when ``mask_background`` is on: the ImageNet mean colour."""


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


def crop_mask(image: np.ndarray, box: tuple[int, int, int, int], size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Returns the (size, size, 3) uint8 crop of ``image`` under ``box``, resized without keeping aspect.

    Args:
        image: (H, W, 3) uint8 RGB tile.
        box: (x0, y0, x1, y1) end-exclusive, inside the image (see :func:`padded_box`).
        size: output side.
        mask: optional (H, W) bool; pixels outside it become BACKGROUND_RGB.
    """
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    if mask is not None:
        crop = np.where(mask[y0:y1, x0:x1, None], crop, np.array(BACKGROUND_RGB, dtype=np.uint8))
    shrink = crop.shape[0] >= size and crop.shape[1] >= size
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


COLOUR_DIMS = 6


def mask_colour(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Returns (6,) float32: mean and standard deviation of the CIELab colour under ``mask``, / 128.

    ``lab`` is the (H, W, 3) uint8 OpenCV Lab image of the tile. Encoders trained for
    ImageNet classification are partly colour-invariant (a white and a yellow line embed
    alike); these statistics let the clustering tell paint colours apart (``cluster.colour_weight``).
    """
    pixels = lab[mask].astype(np.float32)
    if pixels.size == 0:
        return np.zeros(COLOUR_DIMS, np.float32)
    return (np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)]) / 128.0).astype(np.float32)


def surround_colour(lab: np.ndarray, mask: np.ndarray, valid: np.ndarray, width_px: float) -> np.ndarray:
    """Returns (6,) float32: CIELab mean and standard deviation (/ 128, as :func:`mask_colour`) of the
    ``valid`` pixels outside ``mask`` and within ``width_px`` of it; the mask's own statistics when
    there are none (a mask filling its tile: no contrast).

    The sums are exact integer sums of the uint8 channels, so a row does not depend on the process
    that made it. ``cluster.contrast_weight`` clusters on mask minus surround: white paint on dark
    asphalt and a bright rail beside a bright kerb differ there even where their own colours agree.
    """
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(COLOUR_DIMS, np.float32)
    reach = int(np.ceil(width_px)) + 1
    y0, y1 = max(ys.min() - reach, 0), min(ys.max() + reach + 1, mask.shape[0])
    x0, x1 = max(xs.min() - reach, 0), min(xs.max() + reach + 1, mask.shape[1])
    window = mask[y0:y1, x0:x1]
    distances = cv2.distanceTransform((~window).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ring = (distances <= np.float32(width_px)) & ~window & valid[y0:y1, x0:x1]
    pixels = (lab[y0:y1, x0:x1][ring] if ring.any() else lab[mask]).astype(np.int64)
    count = len(pixels)
    mean = pixels.sum(axis=0) / count
    spread = np.sqrt(np.maximum((pixels * pixels).sum(axis=0) / count - mean * mean, 0.0))
    return (np.concatenate([mean, spread]) / 128.0).astype(np.float32)


class Texture:
    """The texture of an image's lightness at physical scales, read out per mask (:meth:`of`).

    Four band-pass images |G(σ_k) − G(σ_k+1)| of the CIELab lightness, σ = 0.5, 1, 2, 4, 8 cm
    at the image's GSD (at least 0.3 px): a mask's mean energy in each band, relative to its
    mean lightness (+ 10) and as a natural log, is the same for a surface at any GSD and
    exposure. The fifth value is the mean orientation coherence of the 1 cm gradients over a
    4 cm window (near 0: no direction, as asphalt grain; near 1: one direction, as along a
    paver joint, a groove or the edge of a stripe). Smooth asphalt, concrete pavers and a lawn
    can share a colour, not these. An object across tiles is read on its canvas, subsampled as
    its crop is (:meth:`FrameObjects.canvas`), at that canvas's GSD. Pixels outside ``valid``
    (padding beyond the frame) are left out of every blur (normalised convolution), so a frame
    edge does not look like texture.
    """

    def __init__(self, lab: np.ndarray, valid: np.ndarray, gsd_cm: float):
        lightness = np.ascontiguousarray(lab[..., 0], dtype=np.float32)
        padded = not bool(np.all(valid))
        weight = np.asarray(valid, dtype=np.float32)

        def blur(image: np.ndarray, sigma_cm: float) -> np.ndarray:
            sigma = max(sigma_cm / gsd_cm, 0.3)
            if not padded:
                return cv2.GaussianBlur(image, (0, 0), sigma)
            return cv2.GaussianBlur(image * weight, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-3)

        blurs = [blur(lightness, scale) for scale in TEXTURE_SCALES_CM]
        self.bands = [np.abs(fine - coarse) for fine, coarse in zip(blurs[:-1], blurs[1:], strict=True)]
        gx = cv2.Sobel(blurs[1], cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(blurs[1], cv2.CV_32F, 0, 1)
        window = max(4.0 / gsd_cm, 1.0)
        jxx, jyy, jxy = (cv2.GaussianBlur(v, (0, 0), window) for v in (gx * gx, gy * gy, gx * gy))
        self.coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-3)
        self.lightness = lightness

    def of(self, mask: np.ndarray) -> np.ndarray:
        """Returns (5,) float32: the texture under ``mask`` (zeros for an empty mask)."""
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return np.zeros(TEXTURE_DIMS, np.float32)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the same pixels, in the same order
        inside = mask[box]
        count = int(inside.sum())

        def total(image: np.ndarray) -> float:
            # float64 sums: a float32 mean's last bit depends on the array's alignment, i.e. on the process
            return float(image[box][inside].sum(dtype=np.float64))

        mean = total(self.lightness) / count + 10.0
        energies = [np.log(total(band) / count / mean + 1e-4) for band in self.bands]
        return np.array([*energies, total(self.coherence) / count], np.float32)


def mask_shape(mask: np.ndarray, gsd_cm: float) -> np.ndarray:
    """Returns (3,) float32: log10 area in cm², log10 width in cm and elongation of a mask, in physical units.

    The width is 4 × (mean distance of the mask's pixels to its border − ½ px), exact for a
    long strip (a 12 cm lane line gives 12 at any GSD); the elongation is ½ ln(λ1 / λ2) of the
    covariance of the pixel coordinates (0 for a disc or a square, 1.8 for a 1 × 6 rectangle).
    Unlike the pixel sizes of a crop, these do not change with the ground sampling distance:
    the same dash is the same row at 0.25 and at 2 cm/px (``cluster.shape_weight``).
    """
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    count = len(ys)
    if count == 0:
        return np.zeros(SHAPE_DIMS, np.float32)
    inside = np.zeros((ys.max() - ys.min() + 3, xs.max() - xs.min() + 3), np.uint8)  # the box, one pixel of border around
    inside[ys - ys.min() + 1, xs - xs.min() + 1] = 1
    distances = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # summed in float64: every distance is a float32 multiple of 2^-23, so the sum is exact in any order while it
    # stays under 2^30 (masks up to ~1,800 px square); a float32 mean's last bit depends on the array's
    # alignment, i.e. on the process that made it
    width_px = max(4.0 * (float(distances[inside > 0].sum(dtype=np.float64)) / count - 0.5), 1.0)
    # the 2 x 2 sample covariance (as np.cov) from exact integer sums, its eigenvalues in closed form: float sums
    # (BLAS, pairwise) round in an order that depends on threads and alignment, and a mask's row must not depend
    # on the worker that made it
    n, sx, sy = count, int(xs.sum()), int(ys.sum())
    pairs = n * max(n - 1, 1)
    sxx = (n * int((xs * xs).sum()) - sx * sx) / pairs
    syy = (n * int((ys * ys).sum()) - sy * sy) / pairs
    sxy = (n * int((xs * ys).sum()) - sx * sy) / pairs
    half_gap = float(np.hypot((sxx - syy) / 2, sxy))
    major, minor = (sxx + syy) / 2 + half_gap, max((sxx + syy) / 2 - half_gap, 0.0)
    elongation = 0.5 * np.log((major + 1 / 12) / (minor + 1 / 12))  # + a pixel's own variance
    return np.array([np.log10(count * gsd_cm**2), np.log10(width_px * gsd_cm), elongation], np.float32)
