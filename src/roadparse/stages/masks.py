"""Stage 2, ``masks``: automatic masks of every tile (paper §3.2.1, §4.2).

Each tile of the finished ``roi`` stage goes through the mask generator (SAM ViT-L,
16x16 grid by default, or an offline superpixel generator); masks under
``min_mask_area`` pixels are dropped. Per tile, ``masks/<tile_id>.json`` is written
atomically in the format of docs/artifacts.md and journalled, so an interrupted run
resumes. A tile that cannot be read is recorded as failed and the run goes on; a
model that cannot be loaded stops the stage at once with the loader's message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from roadparse.artifacts import Tile, list_tiles, masks_path
from roadparse.config import MasksSettings, Settings
from roadparse.executor import BatchFn, make_executor, process_batches
from roadparse.io import rle as rle_io
from roadparse.io.images import read_image
from roadparse.models.mask_generators import MaskGenerator, load_mask_generator
from roadparse.workspace import StageManifest, Workspace, atomic_write_json

log = logging.getLogger(__name__)


def coverage(records: list[dict[str, Any]], height: int, width: int) -> float:
    """Returns the share of an (height, width) tile covered by the union of the records' masks."""
    if not records or height * width == 0:
        return 0.0
    union = np.zeros((height, width), dtype=bool)
    for record in records:
        union |= rle_io.decode(record["rle"])
    return float(union.mean())


def is_flat(image: np.ndarray) -> bool:
    """True for an (H, W, 3) image of a single colour (all black, all white, padding only)."""
    return bool((image == image.reshape(-1, 3)[0]).all())


def _with_ids(tile_id: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns the tile's mask records with ids ``<tile_id>/<k>`` first, in generator order."""
    return [{"id": f"{tile_id}/{k}", **record} for k, record in enumerate(records)]


def _process_tiles(workspace: Workspace, generator: MaskGenerator, tiles: list[Tile]) -> list[dict[str, Any]]:
    """Writes the masks of a batch of tiles (one generator call for all that are not flat); returns their records."""
    images = [read_image(tile.path) for tile in tiles]
    flat = [is_flat(image) for image in images]
    busy = [image for image, is_single in zip(images, flat, strict=True) if not is_single]
    generated = iter(generator.generate_batch(busy) if busy else [])
    results = []
    for tile, image, is_single in zip(tiles, images, flat, strict=True):
        records = [] if is_single else _with_ids(tile.id, next(generated))
        height, width = image.shape[:2]
        atomic_write_json(masks_path(workspace, tile.id), {"tile": tile.id, "height": height, "width": width, "masks": records})
        if is_single:
            log.warning("masks: tile %s is a single colour; no masks", tile.id)
        elif not records:
            log.warning("masks: tile %s has no mask over the area threshold", tile.id)
        results.append(
            {"masks": len(records), "coverage": round(coverage(records, height, width), 4), "pixels": height * width, "flat": is_single}
        )
    return results


@dataclass(frozen=True)
class MasksTask:
    """The masks stage's work on one worker: the generator is loaded once, then batches of tiles."""

    workspace: Workspace
    settings: MasksSettings
    generator: MaskGenerator | None = None

    def load(self) -> BatchFn:
        """Returns the per-batch function, with the generator loaded (or the one given)."""
        generator = self.generator if self.generator is not None else load_mask_generator(self.settings)
        return partial(_process_tiles, self.workspace, generator)


def run(workspace: Workspace, settings: Settings, generator: MaskGenerator | None = None) -> StageManifest:
    """Returns the ``masks`` manifest after generating the masks of every tile (skips when complete).

    Args:
        generator: use this generator instead of loading ``settings.masks.generator`` (tests, notebooks).

    Raises:
        ValueError: ``roi`` has not finished, or the generator cannot be loaded
            (``ModelLoadError`` says how to give a local path).
    """
    roi_manifest = workspace.require_manifest("roi")
    run_ = workspace.begin("masks", settings.masks, inputs={"roi": roi_manifest["fingerprint"]})
    if run_.manifest is not None:  # finished with these settings and inputs
        log.info("masks: complete, skipping")
        return run_.manifest
    tiles = list_tiles(workspace)
    executor = make_executor(settings.run)
    try:
        process_batches(
            run_,
            {tile.id: tile for tile in tiles},
            MasksTask(workspace, settings.masks, generator),
            batch_size=settings.masks.image_batch,
            desc="masks",
            unit="tile",
            executor=executor,
        )
    finally:
        executor.close()
    return run_.finish(_summary(run_.items(), len(tiles)))


def _summary(items: dict[str, dict[str, Any]], n_tiles: int) -> dict[str, Any]:
    done = list(items.values())
    n_masks = sum(item["masks"] for item in done)
    pixels = sum(item["pixels"] for item in done)
    covered = sum(item["coverage"] * item["pixels"] for item in done)
    return {
        "tiles": n_tiles,
        "masks": n_masks,
        "masks_per_tile": round(n_masks / len(done), 2) if done else 0.0,
        "coverage": round(covered / pixels, 4) if pixels else 0.0,
        "tiles_without_masks": sum(1 for item in done if item["masks"] == 0),
        "flat_tiles": sum(1 for item in done if item.get("flat")),
    }
