"""Writes a synthetic drone-road dataset: frames, full-frame labels, tiles, split, README.

Layout under ``out_dir`` (other stages rely on it)::

    frames/<frame_id>.jpg                  JPEG quality 95, ids frame_0000, frame_0001, ...
    labels/<frame_id>.png                  palette label PNG of the whole frame
    tiles/images/<frame_id>_x<X>_y<Y>.png  tile_size x tile_size crops (shift-inward at edges)
    tiles/labels/<frame_id>_x<X>_y<Y>.png  their labels
    split.json                             {"train": [...], "dev": [...]}
    classes.yaml                           the class file
    README.md                              what the data is and how it was made
"""

from __future__ import annotations

import logging
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from roadparse.io.images import write_image
from roadparse.io.labels import load_classes, write_label_png
from roadparse.synth.readme import dataset_readme
from roadparse.synth.styles import get_style
from roadparse.workspace import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

FULL_SIZE = (7952, 5304)
"""(width, height) of a full 42-megapixel drone frame (DJI Zenmuse P1 class)."""


def tile_offsets(length: int, tile: int) -> list[int]:
    """Returns tile start positions covering ``length`` pixels with tiles of ``tile``.

    Tiles are laid edge to edge; a last partial tile is shifted inward so that it ends at
    the border (it then overlaps its neighbour). A length shorter than the tile gives [0]
    (the tile is then the whole length).
    """
    if length <= 0 or tile <= 0:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    if length <= tile:
        return [0]
    offsets = list(range(0, length - tile + 1, tile))
    if offsets[-1] + tile < length:
        offsets.append(length - tile)
    return offsets


def frame_tiles(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Returns (x, y, w, h) of the tiles covering a ``width`` x ``height`` frame, row-major."""
    return [
        (x, y, min(tile, width), min(tile, height))
        for y in tile_offsets(height, tile)
        for x in tile_offsets(width, tile)
    ]


def split_frames(frame_ids: list[str], dev_fraction: float, seed: int) -> dict[str, list[str]]:
    """Returns {"train": [...], "dev": [...]}: a disjoint split, deterministic by ``seed``.

    At least one dev frame when ``dev_fraction > 0`` and there are two or more frames.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    n_dev = int(round(len(frame_ids) * dev_fraction))
    if dev_fraction > 0 and len(frame_ids) >= 2:
        n_dev = max(1, n_dev)
    n_dev = min(n_dev, max(0, len(frame_ids) - 1))
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(frame_ids))
    dev = sorted(frame_ids[i] for i in order[:n_dev])
    return {"train": [f for f in frame_ids if f not in dev], "dev": dev}


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """Returns the generator of frame ``index``: independent of how many frames are made."""
    return np.random.default_rng([seed, index])


def _write_frame(
    out: Path, frame_id: str, image: np.ndarray, label: np.ndarray, tile_size: int, classes: Any
) -> list[str]:
    """Writes one frame, its label and its tiles (cut from the in-memory pixels); returns tile ids."""
    write_image(out / "frames" / f"{frame_id}.jpg", image, quality=95)
    write_label_png(out / "labels" / f"{frame_id}.png", label, classes)
    tile_ids = []
    height, width = label.shape
    for x, y, w, h in frame_tiles(width, height, tile_size):
        tile_id = f"{frame_id}_x{x}_y{y}"
        write_image(out / "tiles" / "images" / f"{tile_id}.png", image[y : y + h, x : x + w])
        write_label_png(out / "tiles" / "labels" / f"{tile_id}.png", label[y : y + h, x : x + w], classes)
        tile_ids.append(tile_id)
    return tile_ids


def generate_dataset(
    out_dir: str | Path,
    n_frames: int = 8,
    width: int = 2400,
    height: int = 1600,
    seed: int = 0,
    dev_fraction: float = 0.25,
    gsd_cm: float | None = None,
    tile_size: int = 800,
    command: str | None = None,
    progress: bool = True,
    style: str = "highway",
) -> dict[str, Any]:
    """Returns a summary dict after writing a synthetic dataset to ``out_dir``.

    Same arguments give byte-identical labels (frames are rendered from
    ``np.random.default_rng([seed, index])``). Existing files are overwritten atomically.

    Args:
        out_dir: output folder (created).
        n_frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        seed: random seed.
        dev_fraction: share of frames in the dev split.
        gsd_cm: ground sampling distance in cm per pixel (None: the style's default,
            0.25 for highway, 0.5 for urban).
        tile_size: tile side in pixels.
        command: the command line recorded in the README (default: the equivalent CLI call).
        progress: show a tqdm progress bar over frames.
        style: the synthetic family, ``highway`` (the demo's) or ``urban``.

    Raises:
        ValueError: a non-positive count or size, ``dev_fraction`` outside [0, 1) or an
            unknown style.
    """
    family = get_style(style)
    gsd_cm = family.default_gsd_cm if gsd_cm is None else gsd_cm
    if n_frames <= 0 or width <= 0 or height <= 0 or tile_size <= 0 or gsd_cm <= 0:
        raise ValueError("n_frames, width, height, tile_size and gsd_cm must be positive")
    out = Path(out_dir)
    classes = load_classes()
    frame_ids = [f"frame_{i:04d}" for i in range(n_frames)]
    split = split_frames(frame_ids, dev_fraction, seed)
    pixel_counts = np.zeros(len(classes), dtype=np.int64)
    n_tiles = 0
    bar = tqdm(frame_ids, desc="synth", unit="frame", disable=not progress)
    for index, frame_id in enumerate(bar):
        image, label = family.render(frame_rng(seed, index), width, height, gsd_cm)
        pixel_counts += np.bincount(label.ravel(), minlength=len(classes))[: len(classes)]
        n_tiles += len(_write_frame(out, frame_id, image, label, tile_size, classes))
    atomic_write_json(out / "split.json", split)
    class_file = resources.files("roadparse.data").joinpath("classes.yaml").read_text()
    atomic_write_text(out / "classes.yaml", class_file)
    if command is None:
        command = shlex.join(
            ["roadparse", "synth", str(out), "--frames", str(n_frames), "--width", str(width),
             "--height", str(height), "--seed", str(seed), "--dev-fraction", str(dev_fraction),
             "--gsd-cm", str(gsd_cm)] + (["--style", style] if style != "highway" else [])
        )
    shares = {name: float(count / pixel_counts.sum()) for name, count in zip(classes.names, pixel_counts, strict=True)}
    summary = {
        "out_dir": str(out),
        "frames": n_frames,
        "tiles": n_tiles,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "gsd_cm": gsd_cm,
        "style": style,
        "seed": seed,
        "train": len(split["train"]),
        "dev": len(split["dev"]),
        "class_pixel_share": shares,
    }
    atomic_write_text(out / "README.md", dataset_readme(summary, classes, command))
    log.info("wrote %d %s frames and %d tiles to %s", n_frames, style, n_tiles, out)
    return summary


def make_tiny_dataset(
    out_dir: str | Path, n_frames: int = 2, width: int = 400, height: int = 300, seed: int = 0,
    tile_size: int = 200, gsd_cm: float = 0.5, style: str = "highway",
) -> dict[str, Any]:
    """Returns the summary of a tiny dataset for other tests (about 0.1 s per frame).

    The default frames are 400x300 at 0.5 cm/px (2 x 1.5 m), tiled 200x200, with one of
    the two frames in the dev split; with the highway style every class is present in
    every frame (the urban style holds every class only over several frames).
    """
    return generate_dataset(
        out_dir, n_frames=n_frames, width=width, height=height, seed=seed, dev_fraction=0.5,
        gsd_cm=gsd_cm, tile_size=tile_size, progress=False, style=style,
    )
