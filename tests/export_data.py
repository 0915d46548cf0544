"""Test data of the export tests: prediction folders as `roadparse predict` writes them, ragged markings of known size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from roadparse.io.labels import load_classes, write_label_png

CLASSES = load_classes()
ROAD, WHITE, SEALING, CONE = (CLASSES.index(n) for n in ("road", "white_marking", "crack_sealing", "traffic_cone"))
GSD_CM = 0.5  # 10 m = 2000 px, 4 cm = 8 px, 1 m² = 200 x 200 px


def write_prediction(pred_dir: Path, labels: dict[str, np.ndarray], geo: dict[str, dict] | None = None,
                     confidence: int = 230, gsd_cm: float = GSD_CM) -> Path:
    """Writes a prediction folder as `roadparse predict` does: label + confidence PNGs and summary.json."""
    from PIL import Image

    pred_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for stem, label in labels.items():
        write_label_png(pred_dir / f"{stem}_label.png", label, CLASSES)
        Image.fromarray(np.full(label.shape, confidence, np.uint8), mode="L").save(pred_dir / f"{stem}_confidence.png")
        records.append({"input": f"/frames/{stem}.png", "width": label.shape[1], "height": label.shape[0],
                        "gsd_cm": gsd_cm, "pixel_area_m2": (gsd_cm / 100) ** 2, "run_key": "abc123",
                        **(geo or {}).get(stem, {})})
    summary = {"model": "/runs/w/train/round_1/model", "classes": list(CLASSES.names), "images": records, "failed": {}}
    (pred_dir / "summary.json").write_text(json.dumps(summary))
    return pred_dir


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
