"""Benchmark: crop encoding throughput, batched vs one crop at a time, side by side.

Encoders: DINOv2 ViT-B/14 at full size (``Dinov2Config()`` defaults = dinov2-base:
hidden 768, 12 layers, patch 14; random weights, which cost the same as the real
ones) and EfficientNet-Lite0 with its real ImageNet weights. Crops are random
224x224 uint8 RGB. Both modes go through ``Encoder.encode``, so the numbers include
normalisation and the copy back to NumPy. Also reports the largest difference
between the batched and the one-at-a-time features (they must agree).

    python bench/embed.py                                   # 64 crops, batch 32
    python bench/embed.py --crops 16 --single-crops 8       # quick
    python bench/embed.py --encoders efficientnet-lite0 --device cuda

With ``--stage WORKDIR`` (a work directory whose ``roi`` and ``masks`` stages are finished, e.g.
``roadparse run`` on the demo profile), it times the ``embed`` stage against its encoder alone
on the same crops instead: each repeat runs the stage on a fresh copy of the two stages with
the run's settings (``WORKDIR/settings.yaml``), the encoder's batches recorded, then encodes
the recorded batches again back to back in the same process; the ratio of the two crop rates
(the stage's as its manifest reports it) is what the per-tile statistics, the crops and the
assembly cost on top of the network.

    python bench/embed.py --stage demo-out/run --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roadparse.models import resolve_device
from roadparse.models.encoders import IMAGENET_MEAN, IMAGENET_STD, Encoder, VitEncoder, load_encoder

ENCODERS = ("dinov2-vitb", "efficientnet-lite0")


def build_encoder(name: str, device: torch.device) -> tuple[Encoder, int]:
    """Returns (encoder, layer) for a benchmark encoder name."""
    if name == "dinov2-vitb":
        from transformers import Dinov2Config, Dinov2Model

        model = Dinov2Model(Dinov2Config())  # dinov2-base architecture, random weights (no download here)
        return VitEncoder(name, model, [12], list(range(1, 13)), device, IMAGENET_MEAN, IMAGENET_STD, 224), 12
    if name == "efficientnet-lite0":
        return load_encoder(name, [8], device), 8
    raise ValueError(f"unknown benchmark encoder {name!r}; choose from {', '.join(ENCODERS)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_encoding(encoder: Encoder, crops: np.ndarray, batch_size: int, layer: int) -> tuple[float, np.ndarray]:
    """Returns (seconds, (N, D) features) of encoding ``crops`` in batches of ``batch_size``."""
    encoder.encode(crops[: min(batch_size, len(crops))])  # warm-up: allocator, kernels, caches
    _sync(encoder.device)
    start = time.perf_counter()
    parts = [encoder.encode(crops[i : i + batch_size])[layer] for i in range(0, len(crops), batch_size)]
    _sync(encoder.device)
    return time.perf_counter() - start, np.concatenate(parts)


def stage_against_encoder(workdir: Path, repeat: int, sample_batches: int) -> None:
    """Prints, per repeat, the embed stage's crops/s, its encoder's alone on the same batches, and their ratio."""
    from roadparse.config import load_settings
    from roadparse.stages import embed
    from roadparse.workspace import Workspace
    from throughput import RecordingEncoder

    settings = load_settings(workdir / "settings.yaml", ["embed.device=cpu"])
    encoder = load_encoder(settings.embed.encoder, sorted(set(settings.embed.layers)), "cpu")
    print(f"{workdir}: encoder {settings.embed.encoder}, batch {settings.embed.batch_size}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'repeat':>6} {'crops':>6} {'stage s':>8} {'stage crops/s':>14} {'encoder crops/s':>16} {'ratio':>6}")
    ratios = []
    for index in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            for stage in ("roi", "masks"):
                shutil.copytree(workdir / stage, Path(tmp) / stage)
            recording = RecordingEncoder(encoder, sample_batches)
            start = time.perf_counter()
            summary = embed.run(Workspace(Path(tmp)), settings, encoder=recording)["summary"]  # type: ignore[arg-type]
            seconds = time.perf_counter() - start
        crops = summary["crops_encoded_now"]
        alone = crops / (recording.calls * recording.alone_seconds_per_batch())
        ratios.append(summary["crops_per_second"] / alone)
        print(f"{index + 1:>6} {crops:>6} {seconds:>8.1f} {summary['crops_per_second']:>14.2f} {alone:>16.2f} {ratios[-1]:>6.2f}",
              flush=True)
    print(f"median ratio {float(np.median(ratios)):.2f} (load average now {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, default=None, help="work directory: the embed stage against its encoder")
    parser.add_argument("--repeat", type=int, default=3, help="with --stage: runs of the stage")
    parser.add_argument("--sample-batches", type=int, default=8, help="with --stage: batches re-encoded to time the encoder")
    parser.add_argument("--crops", type=int, default=64, help="crops encoded in the batched run")
    parser.add_argument("--single-crops", type=int, default=None, help="crops encoded one at a time (default: --crops)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--encoders", default=",".join(ENCODERS), help=f"comma-separated subset of {', '.join(ENCODERS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage is not None:
        stage_against_encoder(args.stage, args.repeat, args.sample_batches)
        return
    device = resolve_device(args.device)
    single_n = args.single_crops or args.crops
    crops = np.random.default_rng(0).integers(0, 256, size=(args.crops, 224, 224, 3), dtype=np.uint8)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; {args.crops} crops batched (batch {args.batch_size}), {single_n} one at a time; 224x224")
    header = f"{'encoder':<20} {'mode':<12} {'crops':>6} {'seconds':>9} {'crops/s':>9} {'vs single':>10} {'max |diff|':>11}"
    print(header)
    print("-" * len(header))
    for encoder_name in args.encoders.split(","):
        encoder, layer = build_encoder(encoder_name.strip(), device)
        single_s, single_f = time_encoding(encoder, crops[:single_n], 1, layer)
        batched_s, batched_f = time_encoding(encoder, crops, args.batch_size, layer)
        single_rate, batched_rate = single_n / single_s, args.crops / batched_s
        diff = float(np.abs(single_f - batched_f[:single_n]).max())
        print(f"{encoder_name:<20} {'one-by-one':<12} {single_n:>6} {single_s:>9.2f} {single_rate:>9.1f} {1.0:>9.2f}x {'':>11}")
        print(f"{encoder_name:<20} {f'batch {args.batch_size}':<12} {args.crops:>6} {batched_s:>9.2f} {batched_rate:>9.1f} "
              f"{batched_rate / single_rate:>9.2f}x {diff:>11.2e}")
        del encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
