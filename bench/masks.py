"""Benchmark: SAM automatic masks per tile — roadparse vs official segment_anything vs transformers pipeline.

Full-size ViT-B / ViT-L with random weights (built from config, nothing downloaded; the
same weights copied into every implementation), one 800x800 tile, 16x16 grid, every
threshold at 0 so every candidate goes through post-processing. Prints seconds split
into image encoder and decoder + post-processing, with ratios against the official run
taken side by side in this run, and the encoder's GFLOP/s against a big matmul.

Each implementation runs in a fresh process of its own (same weights, from a file): the
allocator settings roadparse makes (``retain_freed_memory``) are process-wide and would
otherwise also speed up whatever runs after it, and each starts from the same state.

    python bench/masks.py --models vit_b,vit_l --repeat 1 [--skip-pipeline] [--bf16] [--encoder-bf16] [--size 800]
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roadparse.io import rle as rle_io
from roadparse.models.sam.amg import SamAutomaticMasks
from roadparse.models.sam.convert import official_to_hf_state_dict, sam_config_for_state_dict

SETTINGS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7)


def tile_image(size: int) -> np.ndarray:
    """Returns a synthetic road tile (roadparse.synth when available, else a drawn one)."""
    try:
        from roadparse.synth import render_tile

        return render_tile(np.random.default_rng(0), size)[0]
    except ImportError:
        from tests.sam_tiny import road_image

        return road_image(size, size)


def encoder_gflop(width: int, depth: int, global_blocks: int, tokens_side: int = 64, window: int = 14) -> float:
    """Returns the approximate GFLOP of one SAM ViT image-encoder pass (2 x multiply-adds)."""
    n = tokens_side**2
    padded = (-(-tokens_side // window) * window) ** 2
    linear = 12 * n * width**2
    windowed = 2 * padded * window**2 * width
    global_attn = 2 * n * n * width
    macs = depth * linear + (depth - global_blocks) * windowed + global_blocks * global_attn
    macs += n * 768 * width + n * width * 256 + n * 256 * 256 * 9
    return 2 * macs / 1e9


def matmul_gflops(side: int = 2048, repeat: int = 5, rounds: int = 3) -> float:
    """Returns this CPU's float32 matmul throughput in GFLOP/s (the best of ``rounds``: a busy
    neighbour on a shared machine only ever lowers it)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            torch.matmul(a, b)
        best = max(best, 2 * side**3 * repeat / (time.perf_counter() - start) / 1e9)
    return best


def run_official(sam, image, points):
    from segment_anything import SamAutomaticMaskGenerator

    generator = SamAutomaticMaskGenerator(sam, points_per_side=points, min_mask_region_area=0, **SETTINGS)
    timed = {}
    set_image = generator.predictor.set_image

    def timed_set_image(*args, **kw):
        start = time.perf_counter()
        set_image(*args, **kw)
        timed["encoder"] = time.perf_counter() - start

    generator.predictor.set_image = timed_set_image
    start = time.perf_counter()
    masks = generator.generate(image)
    total = time.perf_counter() - start
    return timed["encoder"], total - timed["encoder"], [m["segmentation"] for m in masks]


def run_ours(model, image, points, upscale_dtype="float32", encoder_dtype="float32"):
    generator = SamAutomaticMasks(model, points_per_side=points, points_per_batch=256, upscale_dtype=upscale_dtype,
                                  encoder_dtype=encoder_dtype, **SETTINGS)
    start = time.perf_counter()
    embedding, sizes = generator.embed([image])
    encoder = time.perf_counter() - start
    from roadparse.models.sam.amg import CropGeometry

    geometry = CropGeometry(box=[0, 0, image.shape[1], image.shape[0]], input_hw=sizes[0])
    part = generator.process_crop(embedding, geometry, 0, image.shape[:2])
    records = generator._records([part])
    seconds = time.perf_counter() - start - encoder
    return encoder, seconds, [rle_io.decode(record["rle"]) for record in records]


def run_pipeline(model, image, points):
    from PIL import Image
    from transformers import SamImageProcessor, pipeline

    generator = pipeline("mask-generation", model=model, image_processor=SamImageProcessor(), device="cpu")
    timed = {"encoder": 0.0}
    embed = model.get_image_embeddings

    def timed_embed(*args, **kw):
        start = time.perf_counter()
        out = embed(*args, **kw)
        timed["encoder"] += time.perf_counter() - start
        return out

    model.get_image_embeddings = timed_embed
    start = time.perf_counter()
    out = generator(Image.fromarray(image), points_per_batch=64, points_per_crop=points, pred_iou_thresh=0.0,
                    stability_score_thresh=0.0, crops_nms_thresh=0.7)
    total = time.perf_counter() - start
    model.get_image_embeddings = embed
    return timed["encoder"], total - timed["encoder"], [np.asarray(m, dtype=bool) for m in out["masks"]]


def matched_iou(reference: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Returns the mean over the reference masks of their best IoU with any of ``masks`` (1.0: all found)."""
    if not reference:
        return 1.0 if not masks else 0.0
    best = []
    for ref in reference:
        ious = [np.logical_and(ref, m).sum() / max(np.logical_or(ref, m).sum(), 1) for m in masks]
        best.append(max(ious, default=0.0))
    return float(np.mean(best))


def official_model(name: str):
    """Returns the official Sam ``name`` (vit_b, vit_l, vit_h) with seed-0 random weights."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    return sam_model_registry[name](checkpoint=None).eval()


def hf_twin(official):
    """Returns the ``transformers`` SamModel with the official model's weights."""
    from transformers import SamModel

    state = official.state_dict()
    model = SamModel(sam_config_for_state_dict(state)).eval()
    model.load_state_dict(official_to_hf_state_dict(state), strict=False)
    return model


def worker(args: argparse.Namespace) -> None:
    """Runs one implementation on one model ``repeat`` times; pickles (encoder s, post s, masks) of the best."""
    from segment_anything import sam_model_registry

    torch.set_num_threads(args.threads)
    image = tile_image(args.size)
    official = sam_model_registry[args.model](checkpoint=None).eval()
    official.load_state_dict(torch.load(args.state, weights_only=True))
    if args.worker == "official":
        run = lambda: run_official(official, image, args.points)  # noqa: E731
    else:
        model = hf_twin(official)
        del official
        if args.worker == "pipeline":
            run = lambda: run_pipeline(model, image, args.points)  # noqa: E731
        else:
            upscale = "bfloat16" if args.worker == "roadparse-bf16" else "float32"
            encoder = "bfloat16" if args.worker == "roadparse-encoder-bf16" else "float32"
            run = lambda: run_ours(model, image, args.points, upscale, encoder)  # noqa: E731
    best = None
    with torch.inference_mode():
        for _ in range(args.repeat):
            encoder, post, masks = run()
            if best is None or encoder + post < best[0] + best[1]:
                best = (encoder, post, [np.packbits(m) for m in masks], masks[0].shape if masks else None)
    Path(args.out).write_bytes(pickle.dumps(best))


def run_worker(kind: str, name: str, state: Path, args: argparse.Namespace, folder: Path):
    """Returns (encoder s, post s, masks) of ``kind`` on model ``name``, run in a fresh process."""
    out = folder / f"{name}-{kind}.pkl"
    command = [sys.executable, __file__, "--worker", kind, "--model", name, "--state", str(state), "--out", str(out),
               "--size", str(args.size), "--points", str(args.points), "--repeat", str(args.repeat),
               "--threads", str(args.threads)]
    subprocess.run(command, check=True)
    encoder, post, packed, shape = pickle.loads(out.read_bytes())
    masks = [np.unpackbits(m, count=shape[0] * shape[1]).reshape(shape).astype(bool) for m in packed]
    return encoder, post, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_b,vit_l")
    parser.add_argument("--size", type=int, default=800, help="tile side")
    parser.add_argument("--points", type=int, default=16, help="points per side")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation (in its process); best kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also run roadparse with masks.upscale_dtype=bfloat16")
    parser.add_argument("--encoder-bf16", action="store_true", help="also run roadparse with masks.encoder_dtype=bfloat16")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    print(f"tile {args.size}x{args.size}, grid {args.points}x{args.points}, {args.threads} threads, "
          f"thresholds 0; matmul peak {peak:.0f} GFLOP/s (CPU shared with other jobs: compare ratios)")
    header = (f"{'model':<6} {'implementation':<22} {'encoder s':>9} {'decode+post s':>13} {'total s':>8} {'masks':>6} "
              f"{'IoU vs off.':>11} {'total x':>8} {'dec+post x':>10} {'enc GFLOP/s':>11}")
    kinds = {"official segment_anything": "official", "roadparse": "roadparse"}
    if args.bf16:
        kinds["roadparse bf16 upscale"] = "roadparse-bf16"
    if args.encoder_bf16:
        kinds["roadparse bf16 encoder"] = "roadparse-encoder-bf16"
    if not args.skip_pipeline:
        kinds["transformers pipeline"] = "pipeline"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models.split(","):
            official = official_model(name)
            cfg = sam_config_for_state_dict(official.state_dict()).vision_config
            gflop = encoder_gflop(cfg.hidden_size, cfg.num_hidden_layers, len(cfg.global_attn_indexes))
            state = folder / f"{name}.pt"
            torch.save(official.state_dict(), state)
            del official
            results = {label: run_worker(kind, name, state, args, folder) for label, kind in kinds.items()}
            state.unlink()
            ref_enc, ref_post, ref_masks = results["official segment_anything"]
            for label, (encoder, post, masks) in results.items():
                print(f"{name:<6} {label:<22} {encoder:>9.2f} {post:>13.2f} {encoder + post:>8.2f} {len(masks):>6} "
                      f"{matched_iou(ref_masks, masks):>11.4f} {(ref_enc + ref_post) / (encoder + post):>8.2f} "
                      f"{ref_post / post:>10.2f} {gflop / encoder:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
