"""Benchmark of the roi stage on one synthetic 7952x5304 JPEG frame: seconds per frame by step.

Rows, each beside its reference run in the same process:

- decode to long side 1024: ``read_image_reduced`` (JPEG DCT-scaled draft decode)
  vs a full decode (``read_image``) + area resize;
- detector: Grounding DINO at its default size (``GroundingDinoConfig()`` = Swin-T +
  BERT-base, random weights, no download) on the 1024 frame, default processor size;
- filter: CLIP ViT-B/32 (``CLIPConfig()`` defaults, random weights) on the boxes;
- crop + tile: one full decode, cut the road box into 800x800 tiles, write PNGs
  (ours: zlib level 1) vs the same with Pillow's default PNG level;
- whole stage in offline mode (decode, finder, tiles, manifest).

Usage: python bench/roi.py [--width 7952 --height 5304] [--repeat 1] [--skip-models]
Timings on a shared machine are noisy: compare the ratios, taken side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_frame(path: Path, width: int, height: int) -> tuple[int, int, int, int]:
    """Writes a noisy green frame with a grey road band as JPEG; returns the band box."""
    rng = np.random.default_rng(0)
    small = np.clip(
        np.array([60, 140, 50]) + rng.normal(0, 30, (height // 8, width // 8, 3)), 0, 255
    ).astype(np.uint8)
    frame = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    y0, y1 = int(height * 0.35), int(height * 0.6)
    frame[y0:y1] = (110, 110, 112)
    frame[(y0 + y1) // 2 : (y0 + y1) // 2 + 40] = 240
    Image.fromarray(frame).save(path, quality=90)
    return 0, y0, width, y1


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Returns the median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_decode(path: Path, repeat: int) -> tuple[float, float]:
    from roadparse.io.images import read_image, read_image_reduced, reduced_size

    def reference() -> None:
        frame = read_image(path)
        cv2.resize(
            frame, reduced_size(frame.shape[1], frame.shape[0], 1024), interpolation=cv2.INTER_AREA
        )

    return timed(lambda: read_image_reduced(path, 1024), repeat), timed(reference, repeat)


def bench_models(reduced: np.ndarray, repeat: int) -> list[tuple[str, float, float | None, str]]:
    import torch
    from transformers import (
        BertTokenizerFast,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from roadparse.models.detectors import GroundingDinoDetector
    from roadparse.models.zero_shot import ContrastiveClassifier

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "road", "highway", "other"]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)})
    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    detector = GroundingDinoDetector(
        model, GroundingDinoProcessor(GroundingDinoImageProcessor(), tokenizer), torch.device("cpu")
    )
    detector.detect(reduced, "road. highway.", 0.35, 0.25)  # warm-up
    seconds = timed(lambda: detector.detect(reduced, "road. highway.", 0.35, 0.25), repeat)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rows = [
        (
            "detector Grounding DINO-T (random, default size)",
            seconds,
            None,
            f"{params:.0f} M params, input short side 800",
        )
    ]

    vocab = {
        "<|startoftext|>": 0,
        "<|endoftext|>": 1,
        **{f"{w}</w>": i + 2 for i, w in enumerate(["road", "highway", "other"])},
    }
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        clip_tokenizer = CLIPTokenizer(
            vocab=str(Path(folder) / "vocab.json"), merges=str(Path(folder) / "merges.txt")
        )
    clip = CLIPModel(CLIPConfig()).eval()
    classifier = ContrastiveClassifier(
        clip, CLIPProcessor(CLIPImageProcessor(), clip_tokenizer), torch.device("cpu")
    )
    height, width = reduced.shape[:2]
    crops = [
        reduced[int(height * 0.3) : int(height * 0.65)],
        reduced[: height // 2, : width // 2],
        reduced,
    ]
    classifier.classify(crops, ["road", "highway", "other"])
    seconds = timed(lambda: classifier.classify(crops, ["road", "highway", "other"]), repeat)
    rows.append(("filter CLIP ViT-B/32 (random), 3 boxes", seconds, None, "224x224 crops"))
    return rows


def bench_tiles(
    path: Path, box: tuple[int, int, int, int], repeat: int
) -> tuple[float, float, int]:
    from roadparse.geometry import cut_tile, tile_box
    from roadparse.io.images import read_image, write_image

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)

        def run(ours: bool) -> int:
            frame = read_image(path)
            windows = tile_box(box, (frame.shape[1], frame.shape[0]), 800, 0, "shift")
            for index, window in enumerate(windows):
                tile = cut_tile(frame, window)
                if ours:
                    write_image(out / f"t{index}.png", tile)
                else:
                    Image.fromarray(tile).save(out / f"r{index}.png")
            return len(windows)

        count = run(True)
        return timed(lambda: run(True), repeat), timed(lambda: run(False), repeat), count


def bench_stage(path: Path, repeat: int) -> tuple[float, dict]:
    from roadparse.config import load_settings
    from roadparse.stages import roi as roi_stage
    from roadparse.workspace import Workspace

    settings = load_settings(None, ["roi.mode=offline"])
    manifests = []

    def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            manifests.append(roi_stage.run(Workspace(folder), settings, [path]))

    seconds = timed(run, repeat)
    return seconds, manifests[-1]["items"][path.stem]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=7952)
    parser.add_argument("--height", type=int, default=5304)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--skip-models", action="store_true", help="skip the Grounding DINO and CLIP rows"
    )
    args = parser.parse_args()
    import torch

    from roadparse.io.images import read_image_reduced

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.jpg"
        box = make_frame(path, args.width, args.height)
        rows: list[tuple[str, float, float | None, str]] = []
        ours, reference = bench_decode(path, args.repeat)
        rows.append(("decode to long side 1024", ours, reference, "ref: full decode + area resize"))
        reduced, _ = read_image_reduced(path, 1024)
        if not args.skip_models:
            rows += bench_models(reduced, args.repeat)
        ours, reference, count = bench_tiles(path, box, args.repeat)
        rows.append(
            (
                f"crop + tile ({count} tiles, 1 full decode)",
                ours,
                reference,
                "ref: Pillow default PNG level",
            )
        )
        seconds, record = bench_stage(path, args.repeat)
        memory = record["memory"]
        rows.append(
            (
                "whole stage, offline mode",
                seconds,
                None,
                f"{len(record['tiles'])} tiles, peak arrays {memory['peak_array_mb']} MB",
            )
        )

    print(
        f"roi bench: {args.width}x{args.height} JPEG, CPU, {torch.get_num_threads()} torch threads, median of {args.repeat}"
    )
    print(f"{'step':<50} {'ours s':>8} {'ref s':>8} {'ref/ours':>9}  note")
    for name, ours_s, ref_s, note in rows:
        ref_text = f"{ref_s:8.2f}" if ref_s is not None else f"{'-':>8}"
        ratio = f"{ref_s / ours_s:8.1f}x" if ref_s is not None else f"{'-':>9}"
        print(f"{name:<50} {ours_s:8.2f} {ref_text} {ratio}  {note}")


if __name__ == "__main__":
    main()
