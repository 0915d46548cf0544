"""Stage 2, ``masks``: automatic masks of every tile (paper §3.2.1, §4.2).

Each tile of the finished ``roi`` stage goes through the mask generator (SAM ViT-L,
16x16 grid by default, or the offline Felzenszwalb generator); masks under
``min_mask_area_cm2`` (at the tile's GSD; or ``min_mask_area`` pixels) are dropped. Only a
tile's valid part is segmented: padding past the frame edge never becomes a mask.
Per tile, ``masks/<tile_id>.json`` is written
atomically in the format of docs/artifacts.md and journalled, so an interrupted run
resumes. A tile that cannot be read is recorded as failed and the run goes on; a
model that cannot be loaded stops the stage at once with the loader's message.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from roadparse.artifacts import Tile, list_tiles, masks_path
from roadparse.config import REFERENCE_GSD_CM, MasksSettings, Settings
from roadparse.executor import BatchFn, make_executor, process_batches
from roadparse.io import rle as rle_io
from roadparse.io.images import read_image
from roadparse.io.samples import split_alpha
from roadparse.models.mask_generators import MaskGenerator, load_mask_generator, masks_at_gsd
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


class GeneratorsByGsd:
    """One mask generator per tile GSD: pixel sizes (area filter, offline min size, line sizes) follow each tile's GSD.

    The model is loaded once; other GSDs get a shallow copy with their pixel sizes set. A
    generator passed in (tests, notebooks) is used as is for every GSD.
    """

    _PIXEL_ATTRIBUTES = (("min_mask_area", "min_mask_area"), ("min_size", "offline_min_size"))

    def __init__(self, settings: MasksSettings, given: MaskGenerator | None = None):
        self.settings = settings
        self.given = given
        self._by_gsd: dict[float, MaskGenerator] = {}

    def pixels(self, gsd_cm: float | None) -> MasksSettings:
        """Returns the settings with pixel sizes for tiles at ``gsd_cm`` (None: the paper's 0.25)."""
        return masks_at_gsd(self.settings, gsd_cm or REFERENCE_GSD_CM)

    def get(self, gsd_cm: float | None) -> MaskGenerator:
        """Returns the generator for tiles at ``gsd_cm``."""
        if self.given is not None:
            return self.given
        key = gsd_cm or REFERENCE_GSD_CM
        if key not in self._by_gsd:
            if not self._by_gsd:
                self._by_gsd[key] = load_mask_generator(self.settings, gsd_cm=key)
            else:
                clone = copy.copy(next(iter(self._by_gsd.values())))
                resolved = self.pixels(key)
                for attribute, name in self._PIXEL_ATTRIBUTES:
                    if hasattr(clone, attribute):
                        setattr(clone, attribute, getattr(resolved, name))
                self._by_gsd[key] = clone
            log.info("masks: tiles at %g cm/px: masks under %d px dropped", key, self.pixels(key).min_mask_area)
        return self._by_gsd[key]


def _pad_records(records: list[dict[str, Any]], height: int, width: int) -> list[dict[str, Any]]:
    """Returns records of masks found on a tile's valid part, re-encoded at the full (height, width) tile size."""
    padded = []
    for record in records:
        mask = rle_io.decode(record["rle"])
        full = np.zeros((height, width), dtype=bool)
        full[: mask.shape[0], : mask.shape[1]] = mask
        padded.append({**record, "rle": rle_io.encode(full)})
    return padded


def _without_nodata(records: list[dict[str, Any]], nodata: np.ndarray, min_area: int) -> list[dict[str, Any]]:
    """Returns the records with their no-data pixels ((h, w) bool) taken out; masks left under ``min_area`` are dropped."""
    kept = []
    for record in records:
        mask = rle_io.decode(record["rle"])
        data = mask & ~nodata
        area = int(data.sum())
        if area == int(mask.sum()):
            kept.append(record)
        elif area and area >= min_area:
            kept.append({**record, "rle": rle_io.encode(data), "area": area, "bbox": list(rle_io.bbox_xyxy(data))})
    return kept


def _process_tiles(workspace: Workspace, generators: GeneratorsByGsd, tiles: list[Tile]) -> list[dict[str, Any]]:
    """Writes the masks of a batch of tiles (one generator call per GSD for all that are not flat); returns their records.

    A tile's no-data pixels (alpha 0, from a GeoTIFF's nodata, NaN or an alpha band) are in no mask."""
    images, nodata = zip(*(split_alpha(read_image(tile.path, keep_nodata=True)) for tile in tiles), strict=True)
    valid_parts = [image[: tile.valid[1], : tile.valid[0]] for tile, image in zip(tiles, images, strict=True)]
    flat = [is_flat(part) for part in valid_parts]
    generated: dict[int, list[dict[str, Any]]] = {}
    for gsd in sorted({tile.gsd_cm or REFERENCE_GSD_CM for tile in tiles}):
        indices = [i for i, tile in enumerate(tiles) if (tile.gsd_cm or REFERENCE_GSD_CM) == gsd and not flat[i]]
        if indices:
            batch = generators.get(gsd).generate_batch([np.ascontiguousarray(valid_parts[i]) for i in indices])
            generated.update(zip(indices, batch, strict=True))
    results = []
    for index, (tile, image, is_single) in enumerate(zip(tiles, images, flat, strict=True)):
        height, width = image.shape[:2]
        found = generated.get(index, [])
        if nodata[index] is not None:
            valid_height, valid_width = valid_parts[index].shape[:2]
            min_area = generators.pixels(tile.gsd_cm).min_mask_area or 0
            found = _without_nodata(found, nodata[index][:valid_height, :valid_width], min_area)
        if valid_parts[index].shape[:2] != (height, width):
            found = _pad_records(found, height, width)
        records = [] if is_single else _with_ids(tile.id, found)
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
    first_gsd_cm: float | None = None
    """GSD of the first tile to do: its generator is loaded up front, so a model that cannot
    be loaded fails the stage before any tile instead of failing every tile"""

    def load(self) -> BatchFn:
        """Returns the per-batch function, with the generator loaded (or the one given)."""
        generators = GeneratorsByGsd(self.settings, self.generator)
        generators.get(self.first_gsd_cm)
        return partial(_process_tiles, self.workspace, generators)


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
    todo = [tile for tile in tiles if not run_.item_done(tile.id)]
    executor = make_executor(settings.run)
    try:
        process_batches(
            run_,
            {tile.id: tile for tile in tiles},
            MasksTask(workspace, settings.masks, generator, todo[0].gsd_cm if todo else None),
            batch_size=settings.masks.image_batch,
            desc="masks",
            unit="tile",
            executor=executor,
        )
    finally:
        executor.close()
    summary = _summary(run_.items(), len(tiles))
    pixels = GeneratorsByGsd(settings.masks).pixels
    summary["min_mask_area_px"] = {
        f"{gsd:g}": pixels(gsd).min_mask_area for gsd in sorted({t.gsd_cm or REFERENCE_GSD_CM for t in tiles})
    }
    return run_.finish(summary)


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

