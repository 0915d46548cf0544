"""Benchmark of the synthetic drone-road generator: render and write time per frame size.

Prints seconds per frame and per megapixel for rendering and for writing (JPEG frame,
label PNG, tiles), with the per-megapixel ratio against the 2400x1600 demo frame measured
in the same process. Run: ``python bench/synth.py [--full] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from roadparse.io.labels import load_classes
from roadparse.synth import render_frame
from roadparse.synth.dataset import FULL_SIZE, _write_frame


def _time_size(width: int, height: int, repeats: int) -> tuple[float, float]:
    """Returns (render seconds, write seconds) per frame, best of ``repeats``."""
    classes = load_classes()
    render, write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(repeats):
            start = time.perf_counter()
            image, label = render_frame(np.random.default_rng(seed), width, height)
            render.append(time.perf_counter() - start)
            start = time.perf_counter()
            _write_frame(Path(tmp), f"frame_{seed:04d}", image, label, 800, classes)
            write.append(time.perf_counter() - start)
    return min(render), min(write)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time a full 7952x5304 frame (~1 min, ~3 GB)")
    parser.add_argument("--repeats", type=int, default=3, help="frames per size (best is reported)")
    args = parser.parse_args()
    sizes = [(800, 600), (2400, 1600), (4000, 2667)]
    if args.full:
        sizes.append(FULL_SIZE)
    rows = [(w, h, *_time_size(w, h, args.repeats if (w, h) != FULL_SIZE else 1)) for w, h in sizes]
    reference = next((r / (w * h / 1e6)) for w, h, r, _ in rows if (w, h) == (2400, 1600))
    print(f"{'frame':>11} {'MPx':>6} {'render s':>9} {'write s':>8} {'render s/MPx':>13} {'vs 2400x1600':>13}")
    for width, height, render, write in rows:
        megapixels = width * height / 1e6
        per_mpx = render / megapixels
        print(f"{width:>5}x{height:<5} {megapixels:6.2f} {render:9.2f} {write:8.2f} {per_mpx:13.3f} {per_mpx / reference:12.2f}x")


if __name__ == "__main__":
    main()
