"""Benchmark: seconds per megapixel of frames, per stage, from frames to the review step.

The offline profile (``profile: offline``: offline road finder, Felzenszwalb masks,
EfficientNet-Lite0 crops, spectral clustering) runs roi → masks → embed → cluster on

* synthetic highway frames at each ``--gsds`` (``roadparse synth --gsd-cm``), with ``roi.gsd_cm``
  set to the frames' GSD and, as ``roadparse init`` does where a 2 m tile would be under 100 px,
  512 px tiles;
* the real frames of ``--real`` (default ``../shared/data/nitrdrone``, two frames without EXIF)
  with ``roi.mode: none`` and the GSD a new user would guess (``--real-gsd``, 1 cm/px);

and prints seconds per megapixel of frames for each stage and in total (the embed stage's
time includes loading its encoder). For embed it also prints its ratio to its encoder alone on
the same crops: the encoder's batches are recorded during the stage (a sample of
``--sample-batches``), encoded again right after it in the same process, and the stage's
crops/s (as its manifest reports it) is divided by the encoder's on those batches.

``--paper`` adds the paper profile's masks and embed stages on one synthetic tile with
full-size random-weight models built from their configs (SAM ViT-L, 16x16 points; DINOv2
ViT-B/14, layer 12): nothing is downloaded, and random weights cost what trained ones do,
though the number of masks they keep is not what trained ones would keep (the embed row is
therefore also given per crop).

The machine is shared: note the load (printed) next to the figures, and compare ratios.

    python bench/throughput.py                              # 0.25, 1, 3 cm/px and nitrdrone
    python bench/throughput.py --gsds 1 --real none --frames 1 --width 1600 --height 1200
    python bench/throughput.py --gsds none --real none --paper
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.config import Settings, load_profile, load_settings
from roadparse.initialise import COARSE_TILE_PX, MIN_TILE_PX
from roadparse.io.images import list_images, read_image
from roadparse.models.encoders import Encoder, load_encoder
from roadparse.stages import cluster, embed, masks, roi
from roadparse.units import length_px
from roadparse.workspace import Workspace

STAGES = ("roi", "masks", "embed", "cluster")
REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nitrdrone"


class RecordingEncoder:
    """An encoder that times its passes and keeps a sample of the batches it was given."""

    def __init__(self, encoder: Encoder, keep: int):
        self.encoder = encoder
        self.layers = encoder.layers
        self.keep = keep
        self.calls = 0
        self.seconds = 0.0
        self.batches: list[np.ndarray] = []

    def encode(self, crops: np.ndarray) -> dict[int, np.ndarray]:
        """Returns the wrapped encoder's features, timing the call and keeping the batch while the sample is short."""
        start = time.perf_counter()
        out = self.encoder.encode(crops)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if len(self.batches) < self.keep:
            self.batches.append(crops.copy())
        return out

    def alone_seconds_per_batch(self) -> float:
        """Returns the encoder's seconds per batch on the kept batches, encoded again (warm) back to back."""
        if not self.batches:
            return float("nan")
        self.encoder.encode(self.batches[0])
        start = time.perf_counter()
        for batch in self.batches:
            self.encoder.encode(batch)
        return (time.perf_counter() - start) / len(self.batches)


def megapixels(frames: list[Path]) -> float:
    """Returns the frames' pixels in millions."""
    return sum(int(np.prod(read_image(path).shape[:2])) for path in frames) / 1e6


def run_profile(settings: Settings, frames: list[Path], sample_batches: int,
                encoder: Encoder | None = None, generator: Any = None) -> dict[str, Any]:
    """Runs roi → cluster on ``frames``; returns seconds per stage, the embed stage's crop rates and counts."""
    workspace = Workspace(settings.run.workdir)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    roi.run(workspace, settings, frames)
    seconds["roi"] = time.perf_counter() - start
    start = time.perf_counter()
    masks_manifest = masks.run(workspace, settings, generator=generator)
    seconds["masks"] = time.perf_counter() - start
    start = time.perf_counter()
    if encoder is None:
        encoder = load_encoder(settings.embed.encoder, sorted(set(settings.embed.layers)), settings.embed.device)
    recording = RecordingEncoder(encoder, sample_batches)
    manifest = embed.run(workspace, settings, encoder=recording)  # type: ignore[arg-type]
    seconds["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    if manifest["summary"]["masks"] >= settings.cluster.n_clusters:
        cluster.run(workspace, settings)
        seconds["cluster"] = time.perf_counter() - start
    summary = manifest["summary"]
    per_batch = recording.alone_seconds_per_batch()
    crops = summary["crops_encoded_now"]
    alone_rate = crops / (recording.calls * per_batch)
    return {
        "seconds": seconds, "masks": masks_manifest["summary"].get("masks"), "tiles": summary["tiles"], "crops": crops,
        "stage_crops_per_s": summary["crops_per_second"], "encoder_crops_per_s": alone_rate,
        "ratio": summary["crops_per_second"] / alone_rate, "in_stage_encoder_s": recording.seconds,
    }


def offline_settings(workdir: Path, frames: Path, gsd_cm: float, overrides: list[str], profile: Path | None) -> Settings:
    """Returns the offline profile (or the settings file ``profile``) on ``frames`` at ``gsd_cm``, on the CPU, with
    the tile size ``roadparse init`` would choose."""
    base = [f"run.frames={frames}", f"run.workdir={workdir}", f"roi.gsd_cm={gsd_cm}", "embed.device=cpu",
            "masks.device=cpu", *overrides]
    settings = load_settings(profile, base) if profile is not None else load_profile("offline", base)
    tile_px = settings.roi.tile_size or round(length_px(settings.roi.tile_size_m * 100, gsd_cm))
    if settings.roi.tile_size is None and tile_px < MIN_TILE_PX:
        base.append(f"roi.tile_size={COARSE_TILE_PX}")
        settings = load_settings(profile, base) if profile is not None else load_profile("offline", base)
    return settings


def print_row(name: str, mp: float, result: dict[str, Any]) -> None:
    seconds = result["seconds"]
    cells = " ".join(f"{seconds[s] / mp:>8.2f}" if s in seconds else f"{'-':>8}" for s in STAGES)
    print(f"{name:<24} {mp:>6.2f} {result['tiles']:>6} {result['masks']:>7} {cells} {sum(seconds.values()) / mp:>8.2f} "
          f"{result['stage_crops_per_s']:>8.1f} {result['encoder_crops_per_s']:>8.1f} {result['ratio']:>6.2f}", flush=True)


def header() -> None:
    line = (f"{'frames':<24} {'MP':>6} {'tiles':>6} {'masks':>7} " + " ".join(f"{s:>8}" for s in STAGES)
            + f" {'total':>8} {'embed/s':>8} {'enc/s':>8} {'ratio':>6}")
    print(line)
    print(f"{'':<46}{'seconds per megapixel':-^44}{'':<9}{'crops/s':-^17}")
    print("-" * len(line))


def paper_models(folder: Path) -> tuple[Path, Path]:
    """Saves full-size random-weight SAM ViT-L and DINOv2 ViT-B/14 (built from their configs) under ``folder``."""
    import torch
    from transformers import Dinov2Config, Dinov2Model, SamConfig, SamModel, SamVisionConfig

    torch.manual_seed(0)
    vit_l = SamVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23])
    SamModel(SamConfig(vision_config=vit_l.to_dict())).eval().save_pretrained(folder / "sam-vit-large")
    Dinov2Model(Dinov2Config()).eval().save_pretrained(folder / "dinov2-base")
    return folder / "sam-vit-large", folder / "dinov2-base"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gsds", default="0.25,1,3", help="GSDs (cm/px) of the synthetic frames; 'none' for none")
    parser.add_argument("--frames", type=int, default=1, help="synthetic frames per GSD")
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--style", default="highway", choices=["highway", "urban"])
    parser.add_argument("--real", default=str(REAL), help="folder of real frames (images/ inside, or the frames); 'none'")
    parser.add_argument("--real-gsd", type=float, default=1.0, help="the GSD a user would guess for the real frames")
    parser.add_argument("--profile", type=Path, default=None, help="a settings file instead of the offline profile")
    parser.add_argument("--sample-batches", type=int, default=8, help="encoder batches kept to time the encoder alone")
    parser.add_argument("--paper", action="store_true", help="also the paper profile's masks and embed on one tile")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folders here (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    from roadparse.synth import generate_dataset

    print(f"CPU threads {torch.get_num_threads()}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          "embed includes loading its encoder; ratio = embed crops/s / encoder-alone crops/s on the same batches")
    header()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        gsds = [] if args.gsds == "none" else [float(g) for g in args.gsds.split(",")]
        for gsd in gsds:
            data = root / f"synth-{gsd:g}"
            generate_dataset(data, n_frames=args.frames, width=args.width, height=args.height, seed=0, gsd_cm=gsd,
                             progress=False, style=args.style, dev_fraction=0.0)
            frames = list_images(data / "frames")
            settings = offline_settings(root / f"run-{gsd:g}", data / "frames", gsd, [], args.profile)
            mp = megapixels(frames)
            result = run_profile(settings, frames, args.sample_batches)
            print_row(f"{args.style} {gsd:g} cm/px", mp, result)
            results[f"{args.style}-{gsd:g}"] = {"megapixels": mp, **result}
        if args.real != "none":
            real = Path(args.real)
            folder = real / "images" if (real / "images").is_dir() else real
            frames = list_images(folder)
            settings = offline_settings(root / "run-real", folder, args.real_gsd, ["roi.mode=none"], args.profile)
            mp = megapixels(frames)
            result = run_profile(settings, frames, args.sample_batches)
            print_row(f"{real.name} (guess {args.real_gsd:g})", mp, result)
            results[real.name] = {"megapixels": mp, **result}
        if args.paper:
            results["paper"] = paper_tile(root, args)
    print(json.dumps(results, indent=1, default=float))


def paper_tile(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Runs the paper profile's masks and embed on one 800x800 tile at 0.25 cm/px; prints and returns its row."""
    from roadparse.synth import generate_dataset

    sam, dinov2 = paper_models(root / "models")
    data = root / "synth-paper"
    generate_dataset(data, n_frames=1, width=800, height=800, seed=0, gsd_cm=0.25, progress=False, dev_fraction=0.0)
    frames = list_images(data / "frames")
    settings = load_settings(None, [f"run.frames={data / 'frames'}", f"run.workdir={root / 'run-paper'}", "roi.mode=none",
                                    "roi.gsd_cm=0.25", f"masks.generator={sam}", f"embed.encoder={dinov2}",
                                    "masks.device=cpu", "embed.device=cpu", "cluster.n_clusters=2",
                                    # random weights score every mask low: keep them all, as bench/masks.py does
                                    "masks.pred_iou_thresh=0", "masks.stability_score_thresh=0"])
    result = run_profile(settings, frames, args.sample_batches)
    print_row("paper, 1 tile (random w.)", megapixels(frames), result)
    print(f"paper profile: {result['crops']} crops, DINOv2 ViT-B {result['encoder_crops_per_s']:.2f} crops/s alone, "
          f"{result['seconds']['embed'] / max(result['crops'], 1):.2f} s per crop in the stage")
    return result


if __name__ == "__main__":
    main()
