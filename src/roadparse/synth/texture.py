"""Procedural textures and lighting for synthetic drone frames (pure numpy/OpenCV).

Every function takes an explicit ``np.random.Generator``; sizes are in pixels, colours
are RGB floats in 0..255. Noise fields are built by upsampling a coarse Gaussian grid,
which costs about one resize per octave whatever the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, height: int, width: int, scale_px: float) -> np.ndarray:
    """Returns (H, W) float32 smooth noise with features about ``scale_px`` wide, ~unit std.

    Scales below 1.5 px give plain per-pixel Gaussian noise.
    """
    if scale_px < 1.5:
        return rng.standard_normal((height, width), dtype=np.float32)
    grid_h = int(np.ceil(height / scale_px)) + 1
    grid_w = int(np.ceil(width / scale_px)) + 1
    grid = rng.standard_normal((grid_h, grid_w), dtype=np.float32)
    # Resizing straight to the frame size keeps the cost proportional to the output.
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    std = float(field[::7, ::7].std()) or 1.0
    return np.ascontiguousarray(field / std)


def fractal_noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    scales_px: tuple[float, ...],
    weights: tuple[float, ...],
) -> np.ndarray:
    """Returns (H, W) float32: the weighted sum of ``value_noise`` octaves."""
    total = np.zeros((height, width), dtype=np.float32)
    for scale, weight in zip(scales_px, weights, strict=True):
        total += np.float32(weight) * value_noise(rng, height, width, scale)
    return total


@dataclass(frozen=True)
class GroundFields:
    """Shared noise fields of one frame, (H, W) float32 each, reused by every material.

    Attributes:
        grain: per-pixel sensor-scale noise.
        stones: aggregate-sized blobs (about 1 cm), thresholded into chips.
        mid: a few centimetres (stains, tyre wear, grass clumps).
        large: tens of centimetres to metres (tone drift).
    """

    grain: np.ndarray
    stones: np.ndarray
    mid: np.ndarray
    large: np.ndarray

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> GroundFields:
        """Returns views of the fields over rows y0:y1 and columns x0:x1."""
        return GroundFields(
            *(array[y0:y1, x0:x1] for array in (self.grain, self.stones, self.mid, self.large))
        )

    @classmethod
    def make(cls, rng: np.random.Generator, height: int, width: int, px_per_m: float) -> GroundFields:
        """Returns the fields for a frame at ``px_per_m`` pixels per metre."""
        return cls(
            grain=value_noise(rng, height, width, 1.0),
            stones=value_noise(rng, height, width, max(1.6, 0.01 * px_per_m)),
            mid=value_noise(rng, height, width, max(2.0, 0.06 * px_per_m)),
            large=fractal_noise(
                rng, height, width, (0.5 * px_per_m, 2.5 * px_per_m), (0.6, 0.8)
            ),
        )


def asphalt(
    fields: GroundFields, mask: np.ndarray, tone: float, tint: np.ndarray, roughness: float = 1.0
) -> np.ndarray:
    """Returns (N, 3) float32 asphalt colours of the ``mask`` pixels: grey ``tone`` with
    aggregate chips and voids (the grain texture encoders should see)."""
    stones = fields.stones[mask]
    chips = np.clip(stones - 0.8, 0.0, None) * np.float32(22.0 * roughness)
    voids = np.clip(-stones - 1.2, 0.0, None) * np.float32(20.0 * roughness)
    luma = (
        np.float32(tone)
        + fields.grain[mask] * np.float32(5.0 * roughness)
        + fields.mid[mask] * np.float32(3.0)
        + fields.large[mask] * np.float32(4.0)
        + chips
        - voids
    )
    tint = np.asarray(tint, dtype=np.float32).reshape(1, 3)
    return luma[:, None] * tint


def vegetation(
    rng: np.random.Generator, fields: GroundFields, mask: np.ndarray, px_per_m: float
) -> np.ndarray:
    """Returns (N, 3) float32 grass-and-soil colours of the ``mask`` pixels."""
    height, width = mask.shape
    soil = np.clip(value_noise(rng, height, width, 0.35 * px_per_m)[mask] * 0.8 - 0.6, 0.0, 1.0)
    blades = cv2.blur(fields.grain, (1, 5))[mask] * np.float32(1.8)  # short grass blades
    luma = 1.0 + 0.18 * fields.mid[mask] + 0.12 * fields.large[mask] + 0.22 * blades
    green = np.array(rng.uniform([60, 95, 35], [85, 125, 55]), dtype=np.float32)
    brown = np.array(rng.uniform([110, 95, 60], [135, 115, 80]), dtype=np.float32)
    colour = green[None, :] * (1 - soil[:, None]) + brown[None, :] * soil[:, None]
    return colour * luma[:, None]


def gravel(
    rng: np.random.Generator, fields: GroundFields, mask: np.ndarray, px_per_m: float
) -> np.ndarray:
    """Returns (N, 3) float32 beige road-side gravel with coarse stones for the ``mask`` pixels."""
    height, width = mask.shape
    pebbles = value_noise(rng, height, width, max(2.0, 0.025 * px_per_m))[mask]
    luma = 1.0 + 0.16 * pebbles + 0.06 * fields.grain[mask] + 0.08 * fields.large[mask]
    base = np.array(rng.uniform([150, 135, 110], [175, 158, 130]), dtype=np.float32)
    return base[None, :] * luma[:, None]


def guardrail_beam(t: np.ndarray, grain: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 W-beam colours from above for positions ``t`` in [0, 1] across it.

    Two rounded ridges give two highlight stripes, the middle groove and the edges are darker.
    """
    ridges = np.exp(-(((t - 0.27) / 0.09) ** 2)) + np.exp(-(((t - 0.73) / 0.09) ** 2))
    groove = np.exp(-(((t - 0.5) / 0.07) ** 2)) + np.exp(-((np.minimum(t, 1 - t) / 0.05) ** 2))
    shade = 0.86 + 0.22 * ridges - 0.16 * groove + 0.03 * grain
    return base.reshape(1, 3) * shade[:, None].astype(np.float32)


def apply_lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Returns (H, W, 3) uint8: ``image`` (float32 0..255) with per-frame exposure, white
    balance, gamma, vignetting, slight optical blur and sensor noise applied.

    Works in place on ``image`` to keep memory low on 40-megapixel frames.
    """
    height, width = image.shape[:2]
    gain = rng.uniform(0.82, 1.18)
    white_balance = 1.0 + rng.uniform(-0.07, 0.07, size=3)
    gamma = rng.uniform(0.9, 1.1)
    image *= (gain * white_balance).astype(np.float32).reshape(1, 1, 3)
    vignette = np.float32(rng.uniform(0.0, 0.18))
    if vignette > 0.01:
        ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
        xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
        image *= (1.0 - vignette * 0.5 * (xs * xs + ys * ys))[..., None]
    cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.5, 0.8)), dst=image)
    sigma = np.float32(rng.uniform(1.2, 3.0))
    # One noise field, read at three row offsets: independent enough per channel, a third
    # of the cost of three draws on 40-megapixel frames.
    noise = rng.standard_normal((height + 2, width), dtype=np.float32)
    noise *= sigma
    for channel in range(3):
        image[..., channel] += noise[channel : channel + height]
    np.clip(image, 0.0, 255.0, out=image)
    image += np.float32(0.5)
    # Gamma through a lookup table: much cheaper than a power of every float.
    curve = (255.0 * (np.arange(256) / 255.0) ** gamma + 0.5).astype(np.uint8)
    return cv2.LUT(image.astype(np.uint8), curve)
