"""Benchmark: bring a 7952x5304 JPEG to long side 1024 — reduced JPEG decoding vs full decode + resize.

Run: python bench/ingest.py [--width 7952 --height 5304 --repeat 3]
Prints seconds per frame for both paths and the ratio (target >= 4x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from roadparse.io.images import read_image, read_image_reduced, reduced_size


def make_frame(path: Path, width: int, height: int, detail: str) -> None:
    """Writes a JPEG frame (quality 92): ``typical`` = smooth shading + fine grain (~12 MB at
    7952x5304, like a drone photo of a road), ``worst`` = strong per-pixel noise (~22 MB, the
    entropy decoder dominates and reduced decoding gains least)."""
    rng = np.random.default_rng(0)
    cell, sigma = (64, 5.0) if detail == "typical" else (8, 12.0)
    small = rng.integers(60, 200, (height // cell + 1, width // cell + 1, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, sigma, (height, width, 1)).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


def full_decode_resize(path: Path, long_side: int) -> np.ndarray:
    """The plain path: decode every pixel, then resize."""
    image = read_image(path)
    height, width = image.shape[:2]
    target = reduced_size(width, height, long_side)
    return np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BILINEAR))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=7952)
    parser.add_argument("--height", type=int, default=5304)
    parser.add_argument("--long-side", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.width}x{args.height} JPEG (quality 92) -> long side {args.long_side}, best of {args.repeat}")
    print("| frame | MB | full decode + resize (s) | roadparse reduced decode (s) | ratio | mean abs diff |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for detail in ("typical", "worst"):
            path = Path(tmp) / f"{detail}.jpg"
            make_frame(path, args.width, args.height, detail)
            reduced, _ = read_image_reduced(path, args.long_side)
            diff = np.abs(reduced.astype(int) - full_decode_resize(path, args.long_side).astype(int)).mean()
            t_reduced = best_of(lambda p=path: read_image_reduced(p, args.long_side), args.repeat)
            t_plain = best_of(lambda p=path: full_decode_resize(p, args.long_side), args.repeat)
            size_mb = path.stat().st_size / 1e6
            print(f"| {detail} | {size_mb:.1f} | {t_plain:.3f} | {t_reduced:.3f} | {t_plain / t_reduced:.2f}x | {diff:.2f} |")

if __name__ == "__main__":
    main()
