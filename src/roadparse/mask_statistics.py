"""Per-mask statistics of a tile: colour, surround, shape and texture, all masks at once.

Arrays in, arrays out (no file I/O, no model). A tile's masks are held as a :class:`MaskStack`
(each mask's tight box and its pixels inside it), so no statistic reads a whole tile per mask:
the sums are labelled-region reductions over the stack's pixels, the blurs of the texture are
made once per tile, and the distance transforms of the shape and the surround ring run on each
mask's box. Every sum is exact (integers) or float64 in a fixed order, so a mask's row does not
depend on the process, the thread or the memory that made it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property, lru_cache

import cv2
import numpy as np

COLOUR_DIMS = 6
"""CIELab mean and standard deviation (/ 128)."""
SHAPE_DIMS = 3
"""log10 area (cm²), log10 width (cm), elongation."""
TEXTURE_SCALES_CM = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Gaussian scales whose successive differences give the texture's band-pass energies."""
TEXTURE_DIMS = len(TEXTURE_SCALES_CM)
"""Four band energies and the orientation coherence."""

Box = tuple[int, int, int, int]


class MaskStack:
    """The masks of one (H, W) image: each mask's tight box and its (h, w) bool pixels in it.

    Built from full masks one at a time (:meth:`from_masks`), it holds about one image's worth of
    pixels for a tiling of the image however many masks there are.
    """

    def __init__(self, shape: tuple[int, int], boxes: np.ndarray, windows: list[np.ndarray]):
        """
        Args:
            shape: (H, W) of the image.
            boxes: (n, 4) int64 tight boxes (x0, y0, x1, y1), end-exclusive; zeros for an empty mask.
            windows: n (y1 - y0, x1 - x0) bool arrays, each mask's pixels inside its box.
        """
        self.shape = (int(shape[0]), int(shape[1]))
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.windows = windows

    @classmethod
    def from_masks(cls, masks: Iterable[np.ndarray], shape: tuple[int, int] | None = None) -> MaskStack:
        """Returns the stack of (H, W) bool masks (an iterable: only one full mask need exist at a time).

        Raises:
            ValueError: a mask is not (H, W) (``shape``, else the first mask's).
        """
        boxes: list[Box] = []
        windows: list[np.ndarray] = []
        for index, mask in enumerate(masks):
            mask = np.asarray(mask, dtype=bool)
            if shape is None:
                shape = (mask.shape[0], mask.shape[1])
            if mask.shape != tuple(shape):
                raise ValueError(f"mask {index} is {mask.shape}, the image is {tuple(shape)}")
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if len(rows) == 0:
                boxes.append((0, 0, 0, 0))
                windows.append(np.zeros((0, 0), bool))
                continue
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            boxes.append(box)
            windows.append(mask[box[1] : box[3], box[0] : box[2]].copy())
        return cls(shape if shape is not None else (0, 0), np.array(boxes, np.int64).reshape(-1, 4), windows)

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int, box: Box) -> np.ndarray:
        """Returns the (y1 - y0, x1 - x0) bool pixels of mask ``index`` under any ``box`` (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box
        out = np.zeros((y1 - y0, x1 - x0), bool)
        mx0, my0, mx1, my1 = (int(v) for v in self.boxes[index])
        ix0, iy0, ix1, iy1 = max(x0, mx0), max(y0, my0), min(x1, mx1), min(y1, my1)
        if ix0 < ix1 and iy0 < iy1:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.windows[index][iy0 - my0 : iy1 - my0, ix0 - mx0 : ix1 - mx0]
        return out

    @cached_property
    def counts(self) -> np.ndarray:
        """(n,) int64 pixels per mask."""
        return np.array([int(np.count_nonzero(w)) for w in self.windows], np.int64)

    @cached_property
    def _local(self) -> tuple[np.ndarray, np.ndarray]:
        """Every mask's pixels in row-major order, masks one after another: (N,) rows and columns in
        its own box, int64."""
        rows, cols = [], []
        for window in self.windows:
            ys, xs = np.nonzero(window)
            rows.append(ys)
            cols.append(xs)
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)

    @cached_property
    def flat_index(self) -> np.ndarray:
        """(N,) int64 row-major index into the (H, W) image of every mask's pixels (see :attr:`counts`)."""
        ys, xs = self._local
        labels = np.repeat(np.arange(len(self)), self.counts)
        return (ys + self.boxes[labels, 1]) * self.shape[1] + xs + self.boxes[labels, 0]

    @cached_property
    def labels(self) -> np.ndarray | None:
        """(H * W,) int64 index of the mask each pixel is in (``len(self)`` where none), row-major; None when masks
        overlap (then a pixel has no one mask)."""
        labels = np.full(self.shape[0] * self.shape[1], len(self), np.int64)
        labels[self.flat_index] = np.repeat(np.arange(len(self)), self.counts)
        if int(np.count_nonzero(labels < len(self))) != len(self.flat_index):
            return None
        return labels

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Returns (n, ...) per-mask sums of ``values``, (N, ...) given in the order of :attr:`flat_index`.

        Integers sum exactly; floats in a fixed order (one pass per mask), as the dtype of ``values``.
        """
        return segment_sums(values, self.counts)


def segment_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Returns (n, ...) sums of consecutive runs of ``values`` (N, ...) of lengths ``counts`` (n,); 0 for empty runs."""
    out = np.zeros((len(counts), *values.shape[1:]), values.dtype)
    present = counts > 0
    if present.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out[present] = np.add.reduceat(values, starts[present], axis=0)
    return out


def _mean_and_spread(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Returns (n, 6) float32 [mean, standard deviation] / 128 from exact per-mask channel sums; zeros for empty masks."""
    out = np.zeros((len(counts), COLOUR_DIMS), np.float32)
    present = counts > 0
    count = counts[present, None].astype(np.float64)
    mean = sums[present] / count
    spread = np.sqrt(np.maximum(squares[present] / count - mean * mean, 0.0))
    out[present] = (np.concatenate([mean, spread], axis=1) / 128.0).astype(np.float32)
    return out


def colour_statistics(lab: np.ndarray, stack: MaskStack) -> np.ndarray:
    """Returns (n, 6) float32: mean and standard deviation of the CIELab colour under each mask, / 128.

    ``lab`` is the (H, W, 3) uint8 OpenCV Lab image. Encoders trained for ImageNet classification
    are partly colour-invariant (a white and a yellow line embed alike); these statistics let the
    clustering tell paint colours apart (``cluster.colour_weight``). Zeros for an empty mask.

    NumPy's float32 mean and standard deviation of each mask's pixels (row-major), the values the
    clustering settings were measured with: on a mask of ~10^5 pixels and more its float32 running
    sum rounds, and the mean is off the exact one by up to ~0.6 Lab units (:func:`surround_statistics`
    sums exactly).
    """
    channels = np.ascontiguousarray(lab.reshape(-1, 3)[stack.flat_index].T, dtype=np.float32)  # (3, N)
    out = np.zeros((len(stack), COLOUR_DIMS), np.float32)
    start = 0
    for index, count in enumerate(stack.counts.tolist()):
        if count:
            out[index] = _float32_mean_and_std(channels[:, start : start + count]) / np.float32(128.0)
        start += count
    return out


def _float32_mean_and_std(channels: np.ndarray) -> np.ndarray:
    """Returns (6,) float32: NumPy's ``mean(axis=0)`` and ``std(axis=0)`` of the (n, 3) float32 pixels given as
    (3, n), bit for bit: running float32 sums, pixel after pixel (a cumulative sum's last value is that sum)."""
    count = np.float32(channels.shape[1])
    mean = np.cumsum(channels, axis=1)[:, -1] / count
    deviation = channels - mean[:, None]
    deviation *= deviation
    return np.concatenate([mean, np.sqrt(np.cumsum(deviation, axis=1)[:, -1] / count)])


def surround_statistics(lab: np.ndarray, stack: MaskStack, valid: np.ndarray, width_px: float) -> np.ndarray:
    """Returns (n, 6) float32: CIELab mean and standard deviation (/ 128) of the ``valid`` pixels
    outside each mask and within ``width_px`` of it; the mask's own statistics when there are none
    (a mask filling its tile: no contrast), zeros for an empty mask.

    ``cluster.contrast_weight`` clusters on mask minus surround: white paint on dark asphalt and a
    bright rail beside a bright kerb differ there even where their own colours agree.
    """
    height, width = stack.shape
    reach = int(np.ceil(width_px)) + 1
    limit = np.float32(width_px)
    own = np.split(stack.flat_index, np.cumsum(stack.counts)[:-1]) if len(stack) else []
    rings: list[np.ndarray] = []
    for index, (x0, y0, x1, y1) in enumerate(stack.boxes.tolist()):
        if stack.counts[index] == 0:
            rings.append(own[index])
            continue
        wx0, wy0, wx1, wy1 = max(x0 - reach, 0), max(y0 - reach, 0), min(x1 + reach, width), min(y1 + reach, height)
        window = stack.window(index, (wx0, wy0, wx1, wy1))
        distances = cv2.distanceTransform((~window).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        ring = (distances <= limit) & ~window & valid[wy0:wy1, wx0:wx1]
        ys, xs = np.nonzero(ring)
        rings.append((ys + wy0) * width + xs + wx0 if len(ys) else own[index])
    counts = np.array([len(ring) for ring in rings], np.int64)
    pixels = lab.reshape(-1, 3)[np.concatenate(rings) if rings else np.zeros(0, np.int64)].astype(np.int64)
    return _mean_and_spread(segment_sums(pixels, counts), segment_sums(pixels * pixels, counts), counts)


def shape_statistics(stack: MaskStack, gsd_cm: float) -> np.ndarray:
    """Returns (n, 3) float32: log10 area in cm², log10 width in cm and elongation of each mask, in physical units.

    The width is 4 × (mean distance of the mask's pixels to its border − ½ px), exact for a
    long strip (a 12 cm lane line gives 12 at any GSD); the elongation is ½ ln(λ1 / λ2) of the
    covariance of the pixel coordinates (0 for a disc or a square, 1.8 for a 1 × 6 rectangle).
    Unlike the pixel sizes of a crop, these do not change with the ground sampling distance:
    the same dash is the same row at 0.25 and at 2 cm/px (``cluster.shape_weight``). Zeros for an empty mask.
    """
    moments = _coordinate_moments(stack)
    out = np.zeros((len(stack), SHAPE_DIMS), np.float32)
    for index, window in enumerate(stack.windows):
        n = int(stack.counts[index])
        if n == 0:
            continue
        inside = np.zeros((window.shape[0] + 2, window.shape[1] + 2), np.uint8)  # the box, one pixel of border around
        inside[1:-1, 1:-1] = window
        distances = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        # summed in float64: every distance is a float32 multiple of 2^-23, so the sum is exact in any order while it
        # stays under 2^30 (masks up to ~1,800 px square)
        width_px = max(4.0 * (float(distances[inside > 0].sum(dtype=np.float64)) / n - 0.5), 1.0)
        # the 2 x 2 sample covariance (as np.cov) from exact integer sums, its eigenvalues in closed form
        sx, sy, sxx_sum, syy_sum, sxy_sum = (int(v) for v in moments[index])
        pairs = n * max(n - 1, 1)
        sxx = (n * sxx_sum - sx * sx) / pairs
        syy = (n * syy_sum - sy * sy) / pairs
        sxy = (n * sxy_sum - sx * sy) / pairs
        half_gap = float(np.hypot((sxx - syy) / 2, sxy))
        major, minor = (sxx + syy) / 2 + half_gap, max((sxx + syy) / 2 - half_gap, 0.0)
        elongation = 0.5 * np.log((major + 1 / 12) / (minor + 1 / 12))  # + a pixel's own variance
        out[index] = (np.log10(n * gsd_cm**2), np.log10(width_px * gsd_cm), elongation)
    return out


def _coordinate_moments(stack: MaskStack) -> np.ndarray:
    """Returns (n, 5) exact integer sums of x, y, x², y², xy over each mask's pixels (the covariance from them does
    not depend on the origin): int64 over each mask's own box, or, when the masks tile the image, float64 holding
    integers below 2^53 from one bincount over the image per moment."""
    labels = stack.labels
    if labels is None:
        ys, xs = stack._local
        return stack.sums(np.stack([xs, ys, xs * xs, ys * ys, xs * ys], axis=1))
    n = len(stack)
    return np.stack([np.bincount(labels, weights=w, minlength=n + 1)[:n] for w in _pixel_moments(stack.shape)], axis=1)


@lru_cache(maxsize=2)
def _pixel_moments(shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Returns (x, y, x², y², xy) of every pixel of an image of ``shape``, row-major, float64 (read-only)."""
    height, width = shape
    xs = np.tile(np.arange(width, dtype=np.float64), height)
    ys = np.repeat(np.arange(height, dtype=np.float64), width)
    moments = (xs, ys, xs * xs, ys * ys, xs * ys)
    for moment in moments:
        moment.flags.writeable = False
    return moments


class Texture:
    """The texture of an image's lightness at physical scales, read out per mask (:meth:`of_stack`).

    Four band-pass images |G(σ_k) − G(σ_k+1)| of the CIELab lightness, σ = 0.5, 1, 2, 4, 8 cm
    at the image's GSD (at least 0.3 px): a mask's mean energy in each band, relative to its
    mean lightness (+ 10) and as a natural log, is the same for a surface at any GSD and
    exposure. The fifth value is the mean orientation coherence of the 1 cm gradients over a
    4 cm window (near 0: no direction, as asphalt grain; near 1: one direction, as along a
    paver joint, a groove or the edge of a stripe). Smooth asphalt, concrete pavers and a lawn
    can share a colour, not these. Pixels outside ``valid`` (padding beyond the frame) are left
    out of every blur (normalised convolution), so a frame edge does not look like texture.
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

    def of_stack(self, stack: MaskStack) -> np.ndarray:
        """Returns (n, 5) float32: the texture under each mask of ``stack`` (zeros for an empty mask)."""
        images = (self.lightness, *self.bands, self.coherence)
        labels = stack.labels
        # float64 sums in a fixed order: a float32 mean's last bit depends on the array's alignment
        if labels is not None:  # masks that tile the image: one pass over each image, no gathering
            totals = np.stack([np.bincount(labels, weights=image.reshape(-1), minlength=len(stack) + 1)[: len(stack)]
                               for image in images], axis=1)
        else:
            index = stack.flat_index
            totals = stack.sums(np.stack([image.reshape(-1)[index] for image in images], axis=1).astype(np.float64))
        out = np.zeros((len(stack), TEXTURE_DIMS), np.float32)
        present = stack.counts > 0
        count = stack.counts[present].astype(np.float64)
        totals = totals[present]
        mean = totals[:, 0] / count + 10.0
        energies = np.log(totals[:, 1:5] / count[:, None] / mean[:, None] + 1e-4)
        out[present] = np.concatenate([energies, (totals[:, 5] / count)[:, None]], axis=1).astype(np.float32)
        return out

    def of(self, mask: np.ndarray) -> np.ndarray:
        """Returns (5,) float32: the texture under one (H, W) bool ``mask`` (zeros for an empty mask)."""
        return self.of_stack(MaskStack.from_masks([mask]))[0]


def mask_colour(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Returns (6,) float32: :func:`colour_statistics` of one (H, W) bool mask."""
    return colour_statistics(lab, MaskStack.from_masks([mask]))[0]


def surround_colour(lab: np.ndarray, mask: np.ndarray, valid: np.ndarray, width_px: float) -> np.ndarray:
    """Returns (6,) float32: :func:`surround_statistics` of one (H, W) bool mask."""
    return surround_statistics(lab, MaskStack.from_masks([mask]), np.asarray(valid, dtype=bool), width_px)[0]


def mask_shape(mask: np.ndarray, gsd_cm: float) -> np.ndarray:
    """Returns (3,) float32: :func:`shape_statistics` of one (H, W) bool mask."""
    return shape_statistics(MaskStack.from_masks([mask]), gsd_cm)[0]
