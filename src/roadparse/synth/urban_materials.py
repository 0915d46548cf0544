"""Materials and lighting of the urban family: its own palette, not the highway's.

Colours are RGB floats in 0..255 for the pixels of a boolean mask, as (N, 3) float32.
The noise fields come from ``texture.GroundFields`` (shared with the highway family);
everything else (pavers, kerb stone, galvanised steel, car paint, cast iron, wet asphalt,
the camera) is drawn here with its own ranges.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadparse.synth import texture

CAR_PAINTS = np.array(
    [[232, 232, 228], [28, 29, 32], [150, 153, 158], [95, 98, 104], [150, 28, 30], [30, 55, 120],
     [200, 200, 195], [60, 80, 60], [170, 150, 120]],
    dtype=np.float32,
)
"""Top-view car body colours, from the common ones (white, black, silver, grey) to the rarer."""
CAR_PAINT_ODDS = np.array([0.22, 0.18, 0.18, 0.12, 0.08, 0.08, 0.06, 0.04, 0.04])


def _grey(rng: np.random.Generator, low: float, high: float, tint: tuple[float, float, float]) -> np.ndarray:
    """Returns (3,) float32: a grey level in [low, high) times a per-channel ``tint``, jittered
    by 1.5 %: neutral materials stay neutral (no channel drawn on its own)."""
    jitter = 1.0 + rng.uniform(-0.015, 0.015, size=3)
    return (rng.uniform(low, high) * np.asarray(tint) * jitter).astype(np.float32)


def urban_asphalt(fields: texture.GroundFields, mask: np.ndarray, tone: float, tint: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32: fine-aggregate city asphalt with oil and rubber stains."""
    stains = np.clip(fields.mid[mask] - 0.6, 0.0, None) * np.float32(9.0)
    luma = (
        np.float32(tone)
        + fields.grain[mask] * np.float32(4.0)
        + np.clip(fields.stones[mask] - 1.0, 0.0, None) * np.float32(14.0)
        + fields.large[mask] * np.float32(6.0)
        - stains
    )
    return luma[:, None] * np.asarray(tint, dtype=np.float32).reshape(1, 3)


def pavers(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, mask: np.ndarray, px_per_m: float,
    fields: texture.GroundFields,
) -> np.ndarray:
    """Returns (N, 3) float32: concrete pavers in running bond with dark joints, one tone per stone."""
    length = rng.uniform(0.2, 0.4) * px_per_m
    depth = rng.uniform(0.1, 0.2) * px_per_m
    joint = max(1.0, rng.uniform(0.006, 0.012) * px_per_m)
    uu, vv = u[mask], v[mask]
    row = np.floor(vv / depth)
    shifted = uu + np.where(np.mod(row, 2) == 1, length / 2, 0.0).astype(np.float32)
    col = np.floor(shifted / length)
    in_joint = (np.mod(shifted, length) < joint) | (np.mod(vv, depth) < joint)
    table = rng.normal(0.0, 1.0, size=997).astype(np.float32)
    stone = table[np.mod(row.astype(np.int64) * 131 + col.astype(np.int64) * 71, 997)]
    base = _grey(rng, 140, 185, (1.02, 1.0, 0.95)) if rng.random() < 0.65 else _grey(rng, 100, 125, (1.5, 0.88, 0.72))
    luma = 1.0 + 0.06 * stone + 0.05 * fields.grain[mask] + 0.05 * fields.large[mask]
    luma = np.where(in_joint, 0.55 + 0.05 * fields.grain[mask], luma)
    return luma[:, None].astype(np.float32) * base.astype(np.float32)[None, :]


def kerb_stone(rng: np.random.Generator, t: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 granite/concrete kerb colours for positions ``t`` in [0, 1] across it
    (0 = road side: the vertical face, darker; then the light top)."""
    base = _grey(rng, 160, 198, (1.0, 1.0, 0.97))
    face = np.where(t < 0.35, 0.72, 1.0) + 0.05 * grain
    return face[:, None].astype(np.float32) * base[None, :]


def lawn_or_roof(rng: np.random.Generator, fields: texture.GroundFields, mask: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 beyond the sidewalk: a mown lawn or a flat gravel roof."""
    if rng.random() < 0.5:
        colour = rng.uniform([70, 100, 45], [100, 130, 65])
        luma = 1.0 + 0.12 * fields.mid[mask] + 0.1 * fields.grain[mask] + 0.1 * fields.large[mask]
    else:
        colour = _grey(rng, 92, 128, (1.02, 1.0, 0.95))
        luma = 1.0 + 0.1 * fields.stones[mask] + 0.06 * fields.grain[mask]
    return luma[:, None].astype(np.float32) * colour.astype(np.float32)[None, :]


def galvanised(rng: np.random.Generator, t: np.ndarray, mottle: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 bright, almost neutral zinc from above at ``t`` in [0, 1] across the
    beam: dull spangle, white-rust blotches and dirt (``mottle``), like worn white paint."""
    base = _grey(rng, 188, 224, (0.99, 1.0, 1.02))
    ridge = np.exp(-(((t - 0.3) / 0.12) ** 2)) + np.exp(-(((t - 0.7) / 0.12) ** 2))
    edge = np.exp(-((np.minimum(t, 1 - t) / 0.06) ** 2))
    shade = 0.9 + 0.08 * ridge - 0.12 * edge + 0.07 * np.tanh(mottle) + 0.03 * grain
    return shade[:, None].astype(np.float32) * base[None, :]


def cast_iron(rng: np.random.Generator, radial: np.ndarray, angle: np.ndarray, grain: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 manhole-cover colours: dark cast iron with raised rings or a grid."""
    base = np.float32(rng.uniform(55, 85))
    if rng.random() < 0.5:
        pattern = (np.mod(radial * 9.0, 1.0) < 0.3).astype(np.float32)
    else:
        pattern = (np.mod(radial * 7.0 + angle * 1.3, 1.0) < 0.25).astype(np.float32)
    luma = base * (1.0 + 0.25 * pattern + 0.06 * grain) + np.where(radial > 0.92, 18.0, 0.0)
    return luma[:, None].astype(np.float32) * np.array([1.0, 0.98, 0.95], dtype=np.float32)


def wet_surface(
    rng: np.random.Generator, image: np.ndarray, wet: np.ndarray, sheen: np.ndarray
) -> None:
    """Darkens the ``wet`` pixels of ``image`` in place and adds sky reflections where the
    ``sheen`` field (unit-std noise) is high: wet asphalt is darker and specular."""
    darken = np.float32(rng.uniform(0.55, 0.72))
    sky = rng.uniform([150, 165, 185], [200, 210, 225]).astype(np.float32)
    # Broad, smooth reflections of the sky, not speckles.
    gloss = np.clip((sheen[wet] - 0.3) / 1.5, 0.0, 1.0)[:, None] * np.float32(rng.uniform(0.2, 0.4))
    image[wet] = image[wet] * darken * (1 - gloss) + sky[None, :] * gloss


def camera(rng: np.random.Generator, image: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Returns (H, W, 3) uint8: the float image under ``shade`` (1 = sunlit), with blue skylight in
    the shadows, a warm or cool white balance, exposure, contrast, blur, noise and JPEG-like loss
    of chroma. Works in place on ``image``."""
    # Shadows are lit by the blue sky only: red drops more than blue.
    skylight = np.array([1.0, 1.0, 1.18], dtype=np.float32) if rng.random() < 0.8 else np.ones(3, np.float32)
    for channel in range(3):
        image[..., channel] *= np.minimum(1.0, shade * skylight[channel])
    cast = rng.choice(["warm", "cool", "neutral"], p=[0.4, 0.4, 0.2])
    if cast == "warm":
        balance = np.array([rng.uniform(1.04, 1.1), rng.uniform(1.0, 1.03), rng.uniform(0.87, 0.95)])
    elif cast == "cool":
        balance = np.array([rng.uniform(0.9, 0.96), rng.uniform(0.98, 1.02), rng.uniform(1.04, 1.1)])
    else:
        balance = 1.0 + rng.uniform(-0.03, 0.03, size=3)
    image *= (balance * rng.uniform(0.85, 1.2)).astype(np.float32).reshape(1, 1, 3)
    # An S-curve around mid-grey: harder contrast than the highway family's gamma.
    contrast = np.float32(rng.uniform(1.0, 1.25))
    image -= np.float32(128.0)
    image *= contrast
    image += np.float32(128.0)
    cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.4, 0.9)), dst=image)
    image += rng.normal(0.0, rng.uniform(1.5, 3.5), size=image.shape[:2]).astype(np.float32)[..., None]
    np.clip(image, 0.0, 255.0, out=image)
    return (image + np.float32(0.5)).astype(np.uint8)
