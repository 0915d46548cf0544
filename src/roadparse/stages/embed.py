"""Stage 3, ``embed``: one embedding per mask, from its bounding-box crop (paper §3.2.2, §4.3).

For every tile and each of its masks: crop the mask's box from the tile (optionally
greying the pixels outside the mask), resize to ``crop_size`` and encode. Crops are batched across the tiles of a group,
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
import time
from collections import deque
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
from roadparse.executor import make_executor, process_batches
from roadparse.io import rle
from roadparse.io.images import read_image
from roadparse.models.encoders import Encoder, load_encoder
from roadparse.workspace import StageManifest, StageRun, Workspace, atomic_output, atomic_write_text

log = logging.getLogger(__name__)

MIN_CROP_SIDE = 8
"""Boxes thinner than this (e.g. a 1x1 mask) are widened around their centre first."""
BACKGROUND_RGB = (124, 116, 104)
"""Grey for pixels outside the mask when ``mask_background`` is on: the ImageNet mean colour."""
_PARTS = ".parts"
TEXTURE_SCALES_CM = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Gaussian scales whose successive differences give the texture's band-pass energies."""
TEXTURE_DIMS = len(TEXTURE_SCALES_CM)
"""Four band energies and the orientation coherence."""


def padded_box(box: tuple[int, int, int, int], min_side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Returns ``box`` (x0, y0, x1, y1, end-exclusive) clipped to the image and widened to ``min_side``.

    A box thinner than ``min_side`` grows around its centre, shifted inward at the
    image border; it never exceeds the image.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = _widen(max(0, min(x0, width - 1)), max(1, min(x1, width)), min_side, width)
    y0, y1 = _widen(max(0, min(y0, height - 1)), max(1, min(y1, height)), min_side, height)
    return x0, y0, x1, y1


def _widen(lo: int, hi: int, min_side: int, limit: int) -> tuple[int, int]:
    hi = max(hi, lo + 1)
    side = min(max(hi - lo, min_side), limit)
    if hi - lo >= side:
        return lo, hi
    start = (lo + hi) // 2 - side // 2
    start = max(0, min(start, limit - side))
    return start, start + side


def crop_mask(image: np.ndarray, box: tuple[int, int, int, int], size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Returns the (size, size, 3) uint8 crop of ``image`` under ``box``, resized without keeping aspect.

    Args:
        image: (H, W, 3) uint8 RGB tile.
        box: (x0, y0, x1, y1) end-exclusive, inside the image (see :func:`padded_box`).
        size: output side.
        mask: optional (H, W) bool; pixels outside it become BACKGROUND_RGB.
    """
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    if mask is not None:
        crop = np.where(mask[y0:y1, x0:x1, None], crop, np.array(BACKGROUND_RGB, dtype=np.uint8))
    shrink = crop.shape[0] >= size and crop.shape[1] >= size
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


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


COLOUR_DIMS = 6


def mask_colour(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Returns (6,) float32: mean and standard deviation of the CIELab colour under ``mask``, / 128.

    ``lab`` is the (H, W, 3) uint8 OpenCV Lab image of the tile. Encoders trained for
    ImageNet classification are partly colour-invariant (a white and a yellow line embed
    alike); these statistics let the clustering tell paint colours apart (``cluster.colour_weight``).
    """
    pixels = lab[mask].astype(np.float32)
    if pixels.size == 0:
        return np.zeros(COLOUR_DIMS, np.float32)
    return (np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)]) / 128.0).astype(np.float32)


def surround_colour(lab: np.ndarray, mask: np.ndarray, valid: np.ndarray, width_px: float) -> np.ndarray:
    """Returns (6,) float32: CIELab mean and standard deviation (/ 128, as :func:`mask_colour`) of the
    ``valid`` pixels outside ``mask`` and within ``width_px`` of it; the mask's own statistics when
    there are none (a mask filling its tile: no contrast).

    The sums are exact integer sums of the uint8 channels, so a row does not depend on the process
    that made it. ``cluster.contrast_weight`` clusters on mask minus surround: white paint on dark
    asphalt and a bright rail beside a bright kerb differ there even where their own colours agree.
    """
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros(COLOUR_DIMS, np.float32)
    reach = int(np.ceil(width_px)) + 1
    y0, y1 = max(ys.min() - reach, 0), min(ys.max() + reach + 1, mask.shape[0])
    x0, x1 = max(xs.min() - reach, 0), min(xs.max() + reach + 1, mask.shape[1])
    window = mask[y0:y1, x0:x1]
    distances = cv2.distanceTransform((~window).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ring = (distances <= np.float32(width_px)) & ~window & valid[y0:y1, x0:x1]
    pixels = (lab[y0:y1, x0:x1][ring] if ring.any() else lab[mask]).astype(np.int64)
    count = len(pixels)
    mean = pixels.sum(axis=0) / count
    spread = np.sqrt(np.maximum((pixels * pixels).sum(axis=0) / count - mean * mean, 0.0))
    return (np.concatenate([mean, spread]) / 128.0).astype(np.float32)


SHAPE_DIMS = 3


class Texture:
    """The texture of an image's lightness at physical scales, read out per mask (:meth:`of`).

    Four band-pass images |G(σ_k) − G(σ_k+1)| of the CIELab lightness, σ = 0.5, 1, 2, 4, 8 cm
    at the image's GSD (at least 0.3 px): a mask's mean energy in each band, relative to its
    mean lightness (+ 10) and as a natural log, is the same for a surface at any GSD and
    exposure. The fifth value is the mean orientation coherence of the 1 cm gradients over a
    4 cm window (near 0: no direction, as asphalt grain; near 1: one direction, as along a
    paver joint, a groove or the edge of a stripe). Smooth asphalt, concrete pavers and a lawn
    can share a colour, not these. Pixels outside ``valid``
    (padding beyond the frame) are left out of every blur (normalised convolution), so a frame
    edge does not look like texture.
    """

    def __init__(self, lab: np.ndarray, valid: np.ndarray, gsd_cm: float):
        lightness = np.ascontiguousarray(lab[..., 0], dtype=np.float32)
        padded = not bool(np.all(valid))
        weight = np.asarray(valid, dtype=np.float32)

        def blur(image: np.ndarray, sigma_cm: float) -> np.ndarray:
            sigma = max(sigma_cm / gsd_cm, 0.3)
            if not padded:
                return cv2.GaussianBlur(image, (0, 0), sigma)
            return cv2.GaussianBlur(image * weight, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-3)

        blurs = [blur(lightness, scale) for scale in TEXTURE_SCALES_CM]
        self.bands = [np.abs(fine - coarse) for fine, coarse in zip(blurs[:-1], blurs[1:], strict=True)]
        gx = cv2.Sobel(blurs[1], cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(blurs[1], cv2.CV_32F, 0, 1)
        window = max(4.0 / gsd_cm, 1.0)
        jxx, jyy, jxy = (cv2.GaussianBlur(v, (0, 0), window) for v in (gx * gx, gy * gy, gx * gy))
        self.coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-3)
        self.lightness = lightness

    def of(self, mask: np.ndarray) -> np.ndarray:
        """Returns (5,) float32: the texture under ``mask`` (zeros for an empty mask)."""
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            return np.zeros(TEXTURE_DIMS, np.float32)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the same pixels, in the same order
        inside = mask[box]
        count = int(inside.sum())

        def total(image: np.ndarray) -> float:
            # float64 sums: a float32 mean's last bit depends on the array's alignment, i.e. on the process
            return float(image[box][inside].sum(dtype=np.float64))

        mean = total(self.lightness) / count + 10.0
        energies = [np.log(total(band) / count / mean + 1e-4) for band in self.bands]
        return np.array([*energies, total(self.coherence) / count], np.float32)


def mask_shape(mask: np.ndarray, gsd_cm: float) -> np.ndarray:
    """Returns (3,) float32: log10 area in cm², log10 width in cm and elongation of a mask, in physical units.

    The width is 4 × (mean distance of the mask's pixels to its border − ½ px), exact for a
    long strip (a 12 cm lane line gives 12 at any GSD); the elongation is ½ ln(λ1 / λ2) of the
    covariance of the pixel coordinates (0 for a disc or a square, 1.8 for a 1 × 6 rectangle).
    Unlike the pixel sizes of a crop, these do not change with the ground sampling distance:
    the same dash is the same row at 0.25 and at 2 cm/px (``cluster.shape_weight``).
    """
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    count = len(ys)
    if count == 0:
        return np.zeros(SHAPE_DIMS, np.float32)
    inside = np.zeros((ys.max() - ys.min() + 3, xs.max() - xs.min() + 3), np.uint8)  # the box, one pixel of border around
    inside[ys - ys.min() + 1, xs - xs.min() + 1] = 1
    distances = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # summed in float64: every distance is a float32 multiple of 2^-23, so the sum is exact in any order while it
    # stays under 2^30 (masks up to ~1,800 px square); a float32 mean's last bit depends on the array's
    # alignment, i.e. on the process that made it
    width_px = max(4.0 * (float(distances[inside > 0].sum(dtype=np.float64)) / count - 0.5), 1.0)
    # the 2 x 2 sample covariance (as np.cov) from exact integer sums, its eigenvalues in closed form: float sums
    # (BLAS, pairwise) round in an order that depends on threads and alignment, and a mask's row must not depend
    # on the worker that made it
    n, sx, sy = count, int(xs.sum()), int(ys.sum())
    pairs = n * max(n - 1, 1)
    sxx = (n * int((xs * xs).sum()) - sx * sx) / pairs
    syy = (n * int((ys * ys).sum()) - sy * sy) / pairs
    sxy = (n * int((xs * ys).sum()) - sx * sy) / pairs
    half_gap = float(np.hypot((sxx - syy) / 2, sxy))
    major, minor = (sxx + syy) / 2 + half_gap, max((sxx + syy) / 2 - half_gap, 0.0)
    elongation = 0.5 * np.log((major + 1 / 12) / (minor + 1 / 12))  # + a pixel's own variance
    return np.array([np.log10(count * gsd_cm**2), np.log10(width_px * gsd_cm), elongation], np.float32)


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
    """Returns the crops of every mask of ``tile``.

    ``with_crops=False`` gives the per-mask statistics alone (no crop is cut; ``crops`` is empty).

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
    crops = np.empty((len(masks) if with_crops else 0, size, size, 3), dtype=np.uint8)
    boxes = np.empty((len(masks), 4), dtype=np.int64)
    areas = np.empty(len(masks), dtype=np.int64)
    colours = np.empty((len(masks), COLOUR_DIMS), dtype=np.float32)
    shapes = np.empty((len(masks), SHAPE_DIMS), dtype=np.float32)
    surrounds = np.empty((len(masks), COLOUR_DIMS), dtype=np.float32)
    textures = np.empty((len(masks), TEXTURE_DIMS), dtype=np.float32)
    gsd = tile.gsd_cm or REFERENCE_GSD_CM
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    valid = np.asarray(image.any(axis=2))  # zero padding beyond the frame is not surround
    texture: Texture | None = None  # made for the tile's first mask
    for i, record in enumerate(masks):
        mask = rle.decode(record["rle"])
        if mask.shape != (height, width):
            raise ValueError(f"tile {tile.id}: mask {record.get('id')} is {mask.shape}, tile image is {(height, width)}")
        box = tuple(record["bbox"]) if "bbox" in record else rle.bbox_xyxy(mask)
        boxes[i] = box
        areas[i] = record["area"] if "area" in record else rle.area(record["rle"])
        if with_crops:
            crops[i] = crop_mask(image, padded_box(box, MIN_CROP_SIDE, width, height), size, mask if settings.mask_background else None)
        colours[i] = mask_colour(lab, mask)
        shapes[i] = mask_shape(mask, gsd)
        surrounds[i] = surround_colour(lab, mask, valid, settings.surround_cm / gsd)
        if texture is None:
            texture = Texture(lab, valid, gsd)
        textures[i] = texture.of(mask)
    return TileCrops(tile, [record.get("id", i) for i, record in enumerate(masks)], boxes, areas, crops, colours, shapes,
                     surrounds, textures)


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
    for tile in tiles:
        try:
            entry = tile_crops(workspace, tile, settings, gains)
        except (ValueError, OSError, KeyError) as exc:
            results[tile.id] = exc
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
