"""Stage 3, ``embed``: one embedding per mask, from its bounding-box crop (paper §3.2.2, §4.3).

For every tile and each of its masks: crop the mask's box from the tile (optionally
greying the pixels outside the mask), resize to ``crop_size`` and encode; with it, each
mask's colour, surround, shape and texture statistics (:mod:`roadparse.mask_statistics`,
all masks of a tile at once). The next tiles are read, measured and cut on a background
thread while the encoder runs. Crops are batched across the tiles of a group,
every forward pass padded to ``embed.batch_size`` rows, so a crop's features do not depend on
its neighbours in the batch. Each finished tile's rows go to
``embed/.parts/<tile>.npz`` (atomically) and are journalled, so an interrupted run
resumes; at the end the parts are assembled, in ``list_tiles`` order and mask order,
into ``features_layer<L>.npy`` per layer and ``index.parquet`` (see docs/artifacts.md).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from tqdm.auto import tqdm

from roadparse.artifacts import (
    TEXTURE_VERSION,
    Tile,
    colour_path,
    embedded_layers,
    features_path,
    index_path,
    list_tiles,
    read_index,
    read_statistics_record,
    read_tile_masks,
    shape_path,
    stage_summary,
    statistics_record_path,
    surround_path,
    texture_path,
)
from roadparse.config import REFERENCE_GSD_CM, EmbedSettings, Settings
from roadparse.crops import crop_masks
from roadparse.executor import make_executor, process_batches
from roadparse.io import rle
from roadparse.io.images import read_image
from roadparse.mask_statistics import (
    COLOUR_DIMS,
    SHAPE_DIMS,
    TEXTURE_DIMS,
    MaskStack,
    Texture,
    colour_statistics,
    shape_statistics,
    surround_statistics,
)
from roadparse.models.encoders import Encoder, load_encoder
from roadparse.workspace import StageManifest, StageRun, Workspace, atomic_output, atomic_write_text

log = logging.getLogger(__name__)

_PARTS = ".parts"


@dataclass
class TileCrops:
    """The crops of one tile waiting to be encoded, and the features gathered so far."""

    tile: Tile
    mask_ids: list[Any]
    boxes: np.ndarray
    """(n, 4) int64 mask boxes (x0, y0, x1, y1) as recorded by the masks stage."""
    areas: np.ndarray
    """(n,) int64 mask areas in pixels."""
    crops: np.ndarray
    """(n, S, S, 3) uint8; released once encoded."""
    colours: np.ndarray = field(default_factory=lambda: np.zeros((0, COLOUR_DIMS), np.float32))
    """(n, 6) float32 colour statistics of each mask's pixels (see :func:`mask_colour`)."""
    shapes: np.ndarray = field(default_factory=lambda: np.zeros((0, SHAPE_DIMS), np.float32))
    """(n, 3) float32 physical shape of each mask (see :func:`mask_shape`)."""
    surrounds: np.ndarray = field(default_factory=lambda: np.zeros((0, COLOUR_DIMS), np.float32))
    """(n, 6) float32 colour statistics of a ring around each mask (see :func:`surround_colour`)."""
    textures: np.ndarray = field(default_factory=lambda: np.zeros((0, TEXTURE_DIMS), np.float32))
    """(n, 5) float32 texture of each mask at physical scales (see :class:`Texture`)."""
    features: dict[int, list[np.ndarray]] = field(default_factory=dict)
    encoded: int = 0

    @property
    def count(self) -> int:
        """Returns the number of masks of the tile."""
        return len(self.mask_ids)




def channel_medians(image: np.ndarray, step: int = 4) -> tuple[np.ndarray, int]:
    """Returns ((3,) per-channel median, pixel count) of an RGB tile's non-black pixels (zero padding excluded), every ``step``-th row and column."""
    pixels = image[::step, ::step].reshape(-1, 3)
    pixels = pixels[pixels.any(axis=1)]
    if len(pixels) == 0:
        return np.zeros(3), 0
    return np.median(pixels, axis=0), len(pixels)


def frame_gains(medians: dict[str, list[tuple[np.ndarray, int]]]) -> dict[str, tuple[float, float, float]]:
    """Returns frame -> (3,) channel gains from its tiles' (median, pixel count) pairs.

    A frame's median per channel is the pixel-weighted mean of its tiles' medians; the gains
    map it to the run's grey (the mean over frames of each frame's mean channel median), so
    a warm, cool, dark or bright frame is brought to the same road grey and the run's overall
    brightness is kept.
    """
    per_frame = {}
    for frame, pairs in medians.items():
        weights = np.array([count for _, count in pairs], dtype=np.float64)
        if weights.sum() == 0:
            continue
        per_frame[frame] = np.average(np.stack([median for median, _ in pairs]), axis=0, weights=weights)
    if not per_frame:
        return {}
    grey = float(np.mean([median.mean() for median in per_frame.values()]))
    gains = {}
    for frame, median in per_frame.items():
        gain = grey / np.maximum(median, 1.0)
        gains[frame] = (float(gain[0]), float(gain[1]), float(gain[2]))
    return gains


def balanced(image: np.ndarray, tile: Tile, gains: dict[str, tuple[float, float, float]] | None) -> np.ndarray:
    """Returns the tile image with its frame's channel gains applied (``embed.colour_normalise: frame``), else as is."""
    if not gains or tile.frame not in gains:
        return image
    scaled = image.astype(np.float32) * np.asarray(gains[tile.frame], dtype=np.float32)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def colour_gains(tiles: list[Tile]) -> dict[str, tuple[float, float, float]]:
    """Returns the per-frame channel gains of ``embed.colour_normalise: frame`` from every tile of the run.

    Computed from all tiles, whatever is left to do, so a resumed run gets the same gains.
    Unreadable tiles are skipped here (they fail in the embedding itself).
    """
    medians: dict[str, list[tuple[np.ndarray, int]]] = {}
    for tile in tqdm(tiles, desc="colour balance", unit="tile", dynamic_ncols=True):
        try:
            medians.setdefault(tile.frame, []).append(channel_medians(read_image(tile.path)))
        except (ValueError, OSError):
            continue
    return frame_gains(medians)


def tile_crops(
    workspace: Workspace, tile: Tile, settings: EmbedSettings,
    gains: dict[str, tuple[float, float, float]] | None = None, *, with_crops: bool = True,
) -> TileCrops:
    """Returns the crops and statistics of every mask of ``tile``.

    The tile's masks are cut and measured all at once (:mod:`roadparse.crops`,
    :mod:`roadparse.mask_statistics`). ``with_crops=False`` gives the per-mask statistics
    alone (no crop is cut; ``crops`` is empty).

    Raises:
        ValueError / OSError: unreadable tile image or mask file, or a mask that does not fit the tile.
    """
    masks = read_tile_masks(workspace, tile.id)
    size = settings.crop_size
    if not masks:
        empty = np.zeros((0, 4), dtype=np.int64)
        return TileCrops(tile, [], empty, np.zeros(0, np.int64), np.zeros((0, size, size, 3), np.uint8))
    image = balanced(read_image(tile.path), tile, gains)
    height, width = image.shape[:2]
    gsd = tile.gsd_cm or REFERENCE_GSD_CM
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    valid = np.asarray(image.any(axis=2))  # zero padding beyond the frame is not surround
    stack = MaskStack.from_masks((_decoded(tile, record, (height, width)) for record in masks), (height, width))
    boxes = np.array([record["bbox"] if "bbox" in record else stack.boxes[i] for i, record in enumerate(masks)], np.int64)
    areas = np.array([record["area"] if "area" in record else stack.counts[i] for i, record in enumerate(masks)], np.int64)
    crops = (crop_masks(image, stack, boxes, size, settings.mask_background) if with_crops
             else np.empty((0, size, size, 3), np.uint8))
    return TileCrops(
        tile, [record.get("id", i) for i, record in enumerate(masks)], boxes, areas, crops,
        colours=colour_statistics(lab, stack),
        shapes=shape_statistics(stack, gsd),
        surrounds=surround_statistics(lab, stack, valid, settings.surround_cm / gsd),
        textures=Texture(lab, valid, gsd).of_stack(stack),
    )


def _decoded(tile: Tile, record: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """Returns the (H, W) bool pixels of one mask record of ``tile``.

    Raises:
        ValueError: the mask is not the tile image's size.
    """
    mask = rle.decode(record["rle"])
    if mask.shape != shape:
        raise ValueError(f"tile {tile.id}: mask {record.get('id')} is {mask.shape}, tile image is {shape}")
    return mask


def _safe_name(tile_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", tile_id)


def part_path(stage_dir: Path, tile_id: str) -> Path:
    """Returns the path of a tile's partial features ``embed/.parts/<tile>.npz``."""
    return stage_dir / _PARTS / f"{_safe_name(tile_id)}.npz"


def _write_part(stage_dir: Path, run_fingerprint: str, entry: TileCrops, layers: list[int]) -> dict[str, Any]:
    arrays: dict[str, np.ndarray] = {
        "fingerprint": np.array(run_fingerprint),
        "mask_ids": np.array(entry.mask_ids if entry.mask_ids else [], dtype=None if entry.mask_ids else np.int64),
        "boxes": entry.boxes,
        "areas": entry.areas,
        "colours": entry.colours,
        "shapes": entry.shapes,
        "surrounds": entry.surrounds,
        "textures": entry.textures,
    }
    dims = {}
    for layer in layers:
        chunks = entry.features.get(layer, [])
        matrix = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
        arrays[f"layer{layer}"] = matrix
        dims[str(layer)] = int(matrix.shape[1]) if chunks else None
    with atomic_output(part_path(stage_dir, entry.tile.id)) as tmp, open(tmp, "wb") as handle:
        # cast: numpy's stubs type **kwds of savez as if a key could be `allow_pickle` (bool)
        np.savez(handle, **cast("dict[str, Any]", arrays))
    return {"masks": entry.count, "dims": dims}


def _part_valid(run: StageRun, tile_id: str) -> bool:
    path = part_path(run.dir, tile_id)
    if not (run.item_done(tile_id) and path.exists()):
        return False
    with np.load(path) as part:  # a part written before shapes, surrounds and textures were recorded is redone
        return str(part["fingerprint"]) == run.fingerprint and "textures" in part.files


class _Batcher:
    """Queues tile crops, encodes them in batches of exactly ``batch_size`` rows, hands back finished tiles.

    Every forward pass has the same shape: the last, partial batch is padded with blank crops.
    On CPU and GPU a row's result depends on the shape of the pass (kernel blocking and thread
    split), never on the other rows or on its position (checked in tests/test_ray.py), so a
    crop's features do not depend on which tiles share its batch: resumed runs and any split
    of the tiles over workers give the same bytes.
    """

    def __init__(self, encoder: Encoder, layers: list[int], batch_size: int):
        self.encoder = encoder
        self.layers = layers
        self.batch_size = batch_size
        self.pending: deque[TileCrops] = deque()
        self.queued = 0
        self.padded = 0
        """Blank rows encoded to fill last batches."""

    def add(self, entry: TileCrops) -> list[TileCrops]:
        """Queues a tile; returns the tiles completed by any full batches encoded now."""
        self.pending.append(entry)
        self.queued += entry.count
        done = []
        while self.queued >= self.batch_size:
            done += self._encode(self.batch_size)
        return done + self._pop_finished()

    def flush(self) -> list[TileCrops]:
        """Encodes whatever is queued; returns every remaining tile."""
        done = []
        while self.queued:
            done += self._encode(min(self.queued, self.batch_size))
        return done + self._pop_finished()

    def _encode(self, count: int) -> list[TileCrops]:
        slices: list[tuple[TileCrops, int, int]] = []
        need = count
        for entry in self.pending:
            take = min(entry.count - entry.encoded, need)
            if take:
                slices.append((entry, entry.encoded, entry.encoded + take))
                need -= take
            if not need:
                break
        parts = [entry.crops[start:stop] for entry, start, stop in slices]
        if count < self.batch_size:
            parts.append(np.zeros((self.batch_size - count, *parts[0].shape[1:]), np.uint8))
            self.padded += self.batch_size - count
        features = self.encoder.encode(np.concatenate(parts))
        offset = 0
        for entry, start, stop in slices:
            for layer in self.layers:
                entry.features.setdefault(layer, []).append(features[layer][offset : offset + stop - start])
            entry.encoded = stop
            offset += stop - start
        self.queued -= count
        return self._pop_finished()

    def _pop_finished(self) -> list[TileCrops]:
        done = []
        while self.pending and self.pending[0].encoded == self.pending[0].count:
            entry = self.pending.popleft()
            entry.crops = entry.crops[:0]  # free the pixels
            done.append(entry)
        return done


PREPARE_AHEAD_BATCHES = 2
"""Crops of about this many encoder batches are read, measured and cut ahead of the encoder."""


def _prepared_ahead(
    tiles: list[Tile], prepare: Callable[[Tile], TileCrops | Exception], limit: int,
) -> Generator[tuple[Tile, TileCrops | Exception], None, None]:
    """Yields (tile, ``prepare(tile)``) in the order of ``tiles``, prepared on a background thread.

    The encoder's forward pass releases the GIL, so the next tiles are read, measured and cut
    while it runs; the thread stops preparing while ``limit`` crops wait. A tile's entry is the
    same whichever thread made it, and the order is kept, so the batches are the same as
    without the thread. Close the generator (``contextlib.closing``) to stop the thread early.
    """
    ready: deque[tuple[Tile, TileCrops | Exception]] = deque()
    state: dict[str, Any] = {"held": 0, "stop": False, "error": None}
    condition = threading.Condition()

    def held(entry: TileCrops | Exception) -> int:
        return entry.count if isinstance(entry, TileCrops) else 0

    def work() -> None:
        try:
            for tile in tiles:
                with condition:
                    condition.wait_for(lambda: state["stop"] or state["held"] < limit)
                    if state["stop"]:
                        return
                entry = prepare(tile)
                with condition:
                    ready.append((tile, entry))
                    state["held"] += held(entry)
                    condition.notify_all()
        except BaseException as exc:  # handed to the consumer, which raises it
            with condition:
                state["error"] = exc
                condition.notify_all()

    thread = threading.Thread(target=work, name="embed-prepare", daemon=True)
    thread.start()
    try:
        for _ in tiles:
            with condition:
                condition.wait_for(lambda: bool(ready) or state["error"] is not None)
                if not ready:
                    raise state["error"]
                item = ready.popleft()
                state["held"] -= held(item[1])
                condition.notify_all()
            yield item
    finally:
        with condition:
            state["stop"] = True
            condition.notify_all()
        thread.join()


GROUP_BATCHES = 8
"""Tiles are handed to a worker in groups of about this many encoder batches of crops: each
group pads its last batch (at most 1/8 more rows) and is journalled when it finishes."""


def embed_tiles(
    workspace: Workspace, settings: EmbedSettings, layers: list[int], stage_dir: Path, run_fingerprint: str,
    encoder: Encoder, gains: dict[str, tuple[float, float, float]] | None, tiles: list[Tile],
) -> list[dict[str, Any] | Exception]:
    """Embeds the masks of ``tiles`` and writes each tile's part; returns one record (or error) per tile.

    A tile whose image or masks cannot be read gets its exception in place of a record.
    """
    batcher = _Batcher(encoder, layers, settings.batch_size)
    results: dict[str, dict[str, Any] | Exception] = {}
    finished: list[TileCrops] = []

    def prepare(tile: Tile) -> TileCrops | Exception:
        try:
            return tile_crops(workspace, tile, settings, gains)
        except (ValueError, OSError, KeyError) as exc:
            return exc

    with closing(_prepared_ahead(tiles, prepare, PREPARE_AHEAD_BATCHES * settings.batch_size)) as prepared:
        for tile, entry in prepared:
            if isinstance(entry, Exception):
                results[tile.id] = entry
                continue
            finished += batcher.add(entry)
    finished += batcher.flush()
    for entry in finished:
        results[entry.tile.id] = _write_part(stage_dir, run_fingerprint, entry, layers)
    return [results[tile.id] for tile in tiles]


@dataclass(frozen=True)
class EmbedTask:
    """The embed stage's work on one worker: the encoder is loaded once, then groups of tiles."""

    workspace: Workspace
    settings: EmbedSettings
    layers: list[int]
    stage_dir: Path
    run_fingerprint: str
    encoder: Encoder | None = None
    gains: dict[str, tuple[float, float, float]] | None = None
    """frame -> channel gains (``embed.colour_normalise: frame``), None: pixels as they are"""

    def load(self) -> Any:
        """Returns the per-group function, with the encoder loaded (or the one given)."""
        cfg = self.settings
        encoder = self.encoder or load_encoder(cfg.encoder, self.layers, cfg.device)
        return partial(embed_tiles, self.workspace, cfg, self.layers, self.stage_dir, self.run_fingerprint, encoder, self.gains)


def _crop_counts(masks_manifest: StageManifest, tiles: list[Tile]) -> dict[str, int]:
    counts = {}
    for tile in tiles:
        record = masks_manifest["items"].get(tile.id, {})
        count = record.get("n_masks", record.get("masks"))
        counts[tile.id] = count if isinstance(count, int) else 1
    return counts


def _read_part(run: StageRun, tile_id: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    # Opened and closed per use: thousands of tiles must not hold thousands of open files.
    with np.load(part_path(run.dir, tile_id)) as part:
        return {key: part[key] for key in keys}


def _assemble(run: StageRun, tiles: list[Tile], layers: list[int]) -> dict[str, Any]:
    """Writes features_layer<L>.npy and index.parquet from the parts of ``tiles``; returns counts.

    Raises:
        ValueError: no tile has any mask (nothing to embed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_read_part(run, tile.id, ("mask_ids", "boxes", "areas", "colours", "shapes", "surrounds", "textures")) for tile in tiles]
    counts = [len(part["areas"]) for part in rows]
    total = sum(counts)
    if total == 0:
        raise ValueError(
            f"{run.dir}: nothing to embed: the masks stage left no masks on any of {len(tiles)} tile(s); "
            "check masks.min_mask_area and the roi/masks outputs"
        )
    first = next(tile for tile, count in zip(tiles, counts, strict=True) if count)
    dims = {layer: _read_part(run, first.id, (f"layer{layer}",))[f"layer{layer}"].shape[1] for layer in layers}
    for stale in set(embedded_layers(run.workspace)) - set(layers):  # layers of an earlier run must not look current
        features_path(run.workspace, stale).unlink()
    for layer in layers:
        with atomic_output(features_path(run.workspace, layer)) as tmp:
            matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, dims[layer]))
            row = 0
            for tile, count in zip(tiles, counts, strict=True):
                if count:
                    matrix[row : row + count] = _read_part(run, tile.id, (f"layer{layer}",))[f"layer{layer}"]
                row += count
            matrix.flush()
            del matrix
    mask_ids = [part["mask_ids"] for part in rows]
    if all(ids.dtype.kind in "iu" for ids in mask_ids):
        mask_id_column = np.concatenate(mask_ids).astype(np.int64)
    else:
        mask_id_column = np.concatenate([ids.astype(str) for ids in mask_ids])
    boxes = np.concatenate([part["boxes"] for part in rows]).reshape(-1, 4)
    table = pa.table(
        {
            "mask_id": mask_id_column,
            "tile_id": np.repeat(np.array([tile.id for tile in tiles], dtype=str), counts),
            "x0": boxes[:, 0], "y0": boxes[:, 1], "x1": boxes[:, 2], "y1": boxes[:, 3],
            "area": np.concatenate([part["areas"] for part in rows]).astype(np.int64),
        }
    )
    with atomic_output(index_path(run.workspace)) as tmp:
        pq.write_table(table, tmp)
    for key, dims_of_row, path in (("colours", COLOUR_DIMS, colour_path), ("shapes", SHAPE_DIMS, shape_path),
                                   ("surrounds", COLOUR_DIMS, surround_path), ("textures", TEXTURE_DIMS, texture_path)):
        _save_rows(path(run.workspace), np.concatenate([part[key].reshape(-1, dims_of_row) for part in rows]))
    return {"masks": total, "dims": {str(layer): int(dim) for layer, dim in dims.items()}}


def _save_rows(path: Path, values: np.ndarray) -> None:
    """Saves per-mask rows as float32 ``.npy`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, values.astype(np.float32))


def _statistics_record(cfg: EmbedSettings, fingerprint: str) -> dict[str, Any]:
    """Returns what ``embed/statistics.json`` says of surrounds and textures made with ``cfg`` for an embedding."""
    return {"surround_cm": cfg.surround_cm, "texture": TEXTURE_VERSION, "embedding": fingerprint}


def _record_statistics(workspace: Workspace, cfg: EmbedSettings, fingerprint: str) -> None:
    atomic_write_text(statistics_record_path(workspace), json.dumps(_statistics_record(cfg, fingerprint)))


def refresh_statistics(workspace: Workspace, cfg: EmbedSettings, manifest: StageManifest) -> bool:
    """Recomputes ``embed/surround.npy`` and ``embed/texture.npy`` of a finished embedding when they
    were made for another ``embed.surround_cm`` or texture version, or before they were recorded;
    returns whether it did.

    Only the masks and tile pixels are read, no encoder runs: the rows follow the index, tile by
    tile, and a tile whose masks no longer match its rows is an error (re-run `roadparse embed`).
    """
    record = read_statistics_record(workspace)
    if (surround_path(workspace).exists() and texture_path(workspace).exists()
            and record == _statistics_record(cfg, manifest["fingerprint"])):
        return False
    index = read_index(workspace)
    tile_ids = index.column("tile_id").to_pylist()
    mask_ids = [str(m) for m in index.column("mask_id").to_pylist()]
    masks_items = workspace.require_manifest("masks")["items"]
    tiles = [tile for tile in list_tiles(workspace) if tile.id in masks_items]  # as the run had them: gains
    by_id = {tile.id: tile for tile in tiles}
    order = list(dict.fromkeys(tile_ids))
    gains = colour_gains(tiles) if cfg.colour_normalise == "frame" else None
    surrounds = np.zeros((len(tile_ids), COLOUR_DIMS), np.float32)
    textures = np.zeros((len(tile_ids), TEXTURE_DIMS), np.float32)
    row = 0
    for tile_id in tqdm(order, desc="embed: surrounds and textures", unit="tile", dynamic_ncols=True):
        entry = tile_crops(workspace, by_id[tile_id], cfg, gains, with_crops=False)
        rows = mask_ids[row : row + entry.count]
        if [str(m) for m in entry.mask_ids] != rows or tile_ids[row : row + entry.count] != [tile_id] * entry.count:
            raise ValueError(f"{workspace.root / 'embed'}: the masks of tile {tile_id} no longer match the embedding; re-run `roadparse embed`")
        surrounds[row : row + entry.count] = entry.surrounds
        textures[row : row + entry.count] = entry.textures
        row += entry.count
    _save_rows(surround_path(workspace), surrounds)
    _save_rows(texture_path(workspace), textures)
    _record_statistics(workspace, cfg, manifest["fingerprint"])
    log.info("embed: surrounds (%g cm) and textures of %d masks recomputed (features kept)", cfg.surround_cm, len(surrounds))
    return True


def run(workspace: Workspace, settings: Settings, *, encoder: Encoder | None = None) -> StageManifest:
    """Embeds every mask of the finished ``masks`` stage; returns the stage manifest.

    Args:
        workspace: the run directory.
        settings: resolved settings; ``settings.embed`` is used.
        encoder: an already loaded encoder to use instead of loading ``settings.embed.encoder``
            (it must give ``settings.embed.layers``).

    Raises:
        ValueError: the masks stage has not finished, the encoder or a layer is unknown,
            or there are no masks at all.
    """
    cfg = settings.embed
    masks_manifest = workspace.require_manifest("masks")
    inputs = {"masks": masks_manifest["fingerprint"]}
    layers = sorted(set(cfg.layers))
    if encoder is None and workspace.finished("embed", cfg, inputs) is None and settings.run.executor == "local":
        # Loaded before begin(): a mistyped encoder or layer must not invalidate a finished embedding.
        encoder = load_encoder(cfg.encoder, layers, cfg.device)
    if encoder is not None and not set(layers) <= set(encoder.layers):
        raise ValueError(f"the given encoder gives layers {encoder.layers}, settings ask for {layers}")
    stage = workspace.begin("embed", cfg, inputs=inputs)
    if stage.manifest is not None:  # finished with these settings and inputs
        log.info("embed: already complete for these settings and masks")
        refresh_statistics(workspace, cfg, stage.manifest)
        return stage.manifest
    tiles = [tile for tile in list_tiles(workspace) if tile.id in masks_manifest["items"]]
    for tile in tiles:  # a part missing or written under other settings is redone
        if stage.item_done(tile.id) and not _part_valid(stage, tile.id):
            stage.forget_item(tile.id)
    done_before = set(stage.items())
    counts = _crop_counts(masks_manifest, tiles)
    gains = colour_gains(tiles) if cfg.colour_normalise == "frame" else None
    started = time.perf_counter()
    executor = make_executor(settings.run)
    try:
        process_batches(
            stage,
            {tile.id: tile for tile in tiles},
            EmbedTask(workspace, cfg, layers, stage.dir, stage.fingerprint, encoder, gains),
            batch_size=cfg.batch_size * GROUP_BATCHES,
            weights=counts,
            desc="embed",
            unit="tile",
            executor=executor,
        )
    finally:
        executor.close()
    encoded = sum(counts[tile.id] for tile in tiles if tile.id in set(stage.items()) - done_before)
    seconds = time.perf_counter() - started
    done = [tile for tile in tiles if _part_valid(stage, tile.id)]
    counts = _assemble(stage, done, layers)
    _record_statistics(workspace, cfg, stage.fingerprint)
    rate = encoded / seconds if seconds > 0 and encoded else None
    manifest = stage.finish(
        {
            **counts,
            "tiles": len(done),
            "encoder": cfg.encoder,
            "layers": layers,
            "crops_encoded_now": encoded,
            "crops_per_second": round(rate, 2) if rate else None,
            "colour_gains": None if gains is None else {
                frame: [round(g, 4) for g in gain] for frame, gain in sorted(gains.items())
            },
        }
    )
    shutil.rmtree(stage.dir / _PARTS, ignore_errors=True)  # the assembled matrices hold the same rows
    log.info("embed: %d masks from %d tiles, %s crops/s", counts["masks"], len(done), stage_summary(manifest, "embed")["crops_per_second"])
    return manifest
