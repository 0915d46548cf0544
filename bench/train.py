"""Benchmark: training iterations/s of the roadparse loop vs a bare forward/backward/step loop.

Models: SegFormer-B0 built from config (random init) and DeepLabV3+ with a ResNet-18
encoder (no weights), both with 7 classes. "roadparse" runs ``train_segmenter`` on
800x800 PNG tiles with pseudo-labels on disk (decode, random resize 512-1024, crop,
flip, masked loss, optimiser of paper Table 6, poly schedule, checkpoint at the end);
"bare" runs the same model and optimiser on pre-made random tensors of the crop size,
so the ratio shows what data loading and the loop around the step cost. "roadparse" runs
twice: decoding each crop's tile again (``selftrain.cache_mb: 0``) and keeping decoded tiles
(the default), on the same tiles in the same order; ``--workers N`` adds a third run with the
cache and N data-loader processes (``selftrain.num_workers``), which trains the same weights.

    python bench/train.py                          # 512 crops, batch 2, 6 iterations each
    python bench/train.py --crop 256 --iterations 3 --models segformer
    python bench/train.py --run demo-out/run --crop 256 --scale 512 1024 --batch 4 --iterations 40 --models deeplabv3plus
    python bench/train.py --crop 256 --scale 512 1024 --batch 4 --iterations 40 --models deeplabv3plus --workers 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roadparse.config import load_settings
from roadparse.io.images import write_image
from roadparse.io.labels import load_classes, write_label_png
from roadparse.models.segmenters import build_segmenter
from roadparse.stages.selftrain.dataset import TileLabelDataset
from roadparse.stages.selftrain.loop import make_optimizer, masked_cross_entropy, train_segmenter

MODELS = {"segformer": ("segformer", "nvidia/mit-b0"), "deeplabv3plus": ("deeplabv3plus", "resnet18")}


def make_tiles(root: Path, n: int, size: int) -> list[tuple[Path, Path]]:
    """Returns (tile, label) paths of ``n`` random ``size``-square tiles with 7-class labels on disk."""
    rng = np.random.default_rng(0)
    classes = load_classes(None)
    samples = []
    for i in range(n):
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        label = rng.integers(0, 7, (size // 16, size // 16), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
        write_image(root / f"t{i}.png", image)
        write_label_png(root / f"t{i}_label.png", label, classes)
        samples.append((root / f"t{i}.png", root / f"t{i}_label.png"))
    return samples


def bare_loop(model: torch.nn.Module, settings, crop: int, iterations: int) -> float:
    """Returns iterations/s of forward + masked loss + backward + step on fixed random tensors."""
    optimizer = make_optimizer(model, settings)
    images = torch.rand(settings.batch_size, 3, crop, crop)
    labels = torch.randint(0, 7, (settings.batch_size, crop, crop))
    model.train()  # no warm-up: the roadparse run's time includes its first iteration too
    start = time.perf_counter()
    for _ in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        masked_cross_entropy(model(images), labels).backward()
        optimizer.step()
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--tile", type=int, default=800)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, nargs=2, metavar=("LOW", "HIGH"),
                        help="random resize short side (default: crop to 2x crop; the demo profile: 512 1024)")
    parser.add_argument("--workers", type=int, default=0, help="also run with the cache and this many loader processes")
    parser.add_argument("--run", type=Path, help="train on this work dir's roi tiles and pseudo-labels instead of random tiles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = tuple(args.scale) if args.scale else (args.crop, 2 * args.crop)
    print(f"CPU, {args.threads} threads, crop {args.crop}, batch {args.batch}, {args.iterations} iterations, tiles {args.tile}px")
    print(f"{'model':<16}{'params (M)':>11}{'bare it/s':>11}{'decoding it/s':>15}{'cached it/s':>13}"
          f"{'cached/decoding':>17}{'cached/bare':>13}"
          + (f"{f'{args.workers} workers it/s':>17}{'workers/cached':>16}" if args.workers else ""))
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is not None:
            tiles = sorted((args.run / "roi" / "tiles").glob("*.png"))
            samples = [(tile, args.run / "pseudolabel" / "labels" / tile.name) for tile in tiles]
        else:
            samples = make_tiles(Path(tmp), 4, args.tile)
        for name in args.models:
            architecture, backbone = MODELS[name]
            settings = load_settings(None, [
                f"selftrain.architecture={architecture}", f"selftrain.backbone={backbone}", "selftrain.pretrained=false",
                f"selftrain.batch_size={args.batch}", f"selftrain.iterations={args.iterations}", f"selftrain.crop_size={args.crop}",
                f"selftrain.scale_range=[{scale[0]}, {scale[1]}]", "selftrain.device=cpu",
            ]).selftrain
            torch.manual_seed(0)
            model = build_segmenter(architecture, backbone, 7, pretrained=False)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            bare = bare_loop(model, settings, args.crop, args.iterations)
            speeds = []
            variants = [(0, 0), (settings.cache_mb, 0)] + ([(settings.cache_mb, args.workers)] if args.workers else [])
            for cache_mb, workers in variants:
                dataset = TileLabelDataset(samples, scale, args.crop, True, cache_mb=cache_mb)
                torch.manual_seed(0)
                model = build_segmenter(architecture, backbone, 7, pretrained=False)
                run_settings = settings.model_copy(update={"num_workers": workers})
                path = Path(tmp) / f"{name}_{cache_mb}_{workers}.pt"
                summary = train_segmenter(model, dataset, run_settings, path, {}, torch.device("cpu"), desc=name)
                speeds.append(summary["iterations_per_second"])
            decoding, cached = speeds[:2]
            line = f"{name:<16}{params:>11.1f}{bare:>11.3f}{decoding:>15.3f}{cached:>13.3f}{cached / decoding:>17.2f}{cached / bare:>13.2f}"
            if args.workers:
                line += f"{speeds[2]:>17.3f}{speeds[2] / cached:>16.2f}"
            print(line)


if __name__ == "__main__":
    main()
