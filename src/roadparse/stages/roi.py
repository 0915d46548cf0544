"""Stage 1, road region of interest (paper §3.1, §4.1.2): frames -> road boxes -> full-resolution tiles.

Per frame: decode at long side 1024 (reduced JPEG decoding), find road boxes
(``detector``: Grounding DINO + zero-shot filter; ``offline``: asphalt colour and
texture; ``none``: the whole frame), map them to full resolution, merge overlapping
ones, read the full-resolution frame once (GeoTIFFs: only the box windows) and cut
the boxes into tiles with the edge rule of :mod:`roadparse.geometry` (``grow``: boxes
whose tiles would share a pixel are tiled by one grid, :func:`~roadparse.geometry.tile_boxes`).

Ground sampling distance: each frame's GSD comes from its GeoTIFF transform, its drone
EXIF/XMP or ``roi.gsd_cm`` (:mod:`roadparse.io.gsd`) and is recorded per frame
(``gsd``: value, source, working GSD, scale, tile side in pixels). With
``roi.target_gsd_cm`` the boxes are resampled to that GSD before tiling (``scale`` = tile
pixels per frame pixel); tile ``offset`` stays in frame pixels, ``size``/``valid`` are tile
pixels. Tile side and overlap are ``roi.tile_size_m`` / ``tile_overlap_m`` at the working
GSD unless given in pixels.

Small frames: under ``grow`` (default) and ``pad`` a frame narrower or shorter than a tile
gives one ``tile_size`` tile, zero-padded, with ``valid`` the frame size; under ``shift`` one
tile of the frame's own size (no padding); under ``drop`` no tile (recorded as a warning on
the frame). ``processed_share`` per frame: tile pixels over frame pixels (1.0 = each pixel once).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.config import RoiSettings, Settings
from roadparse.executor import make_executor, process_items
from roadparse.geometry import (
    EdgeRule,
    TileWindow,
    cut_tile,
    merge_boxes,
    pixel_box,
    scale_boxes,
    tile_boxes,
)
from roadparse.io import geo
from roadparse.io.gsd import frame_gsd
from roadparse.io.images import (
    ImageReadError,
    image_size,
    read_image,
    read_image_reduced,
    resample_image,
    sample_scaling,
    write_image,
)
from roadparse.models.offline_roi import find_road
from roadparse.units import length_px
from roadparse.workspace import StageManifest, Workspace, fingerprint

log = logging.getLogger(__name__)

TILES_DIR = "tiles"
MIN_TILE_PX = 64
"""Tiles smaller than this (a metre-sized tile on a coarse orthomosaic) are tiled with a warning."""


def frame_items(frames: list[Path]) -> dict[str, Path]:
    """Returns item id -> frame path: the file stem, with the suffix added when stems collide."""
    stems: dict[str, int] = {}
    for path in frames:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    items = {}
    for path in frames:
        key = (
            path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        )
        items[key] = Path(path)
    return items


def _frames_fingerprint(items: dict[str, Path]) -> str:
    entries = []
    for key, path in sorted(items.items()):
        stat = path.stat() if path.exists() else None
        entries.append(
            [
                key,
                str(path.resolve()),
                stat.st_size if stat else None,
                stat.st_mtime_ns if stat else None,
            ]
        )
    return fingerprint(entries)


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class _RoadBoxFinder:
    """Finds road boxes on a reduced frame; models are loaded on first use."""

    def __init__(self, settings: RoiSettings):
        self.settings = settings
        self._detector: Any = None
        self._filter: Any = None

    def find(self, reduced: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Returns ((K, 4) kept boxes in reduced pixels, one info dict per kept box)."""
        if self.settings.mode == "offline":
            regions = find_road(reduced)
            infos = [{"source": "offline", "score": round(float(s), 4)} for s in regions.scores]
            return regions.boxes, infos
        return self._detect(reduced)

    def load(self) -> None:
        """Loads the detector and filter (mode ``detector``), so a missing model fails before any frame."""
        settings = self.settings
        if settings.mode != "detector" or self._detector is not None:
            return
        from roadparse.models.detectors import load_detector

        self._detector = load_detector(settings.detector, settings.device)
        if settings.filter:
            from roadparse.models.zero_shot import load_zero_shot_classifier

            self._filter = load_zero_shot_classifier(settings.filter, settings.device)

    def _detect(self, reduced: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        settings = self.settings
        self.load()
        detections = self._detector.detect(
            reduced, settings.prompt, settings.box_threshold, settings.text_threshold
        )
        infos = [
            {
                "source": "detector",
                "score": round(d.score, 4),
                "label": d.label,
                "reduced_box": [round(v, 2) for v in d.box_xyxy],
            }
            for d in detections
        ]
        boxes = np.array([d.box_xyxy for d in detections], dtype=np.float64).reshape(-1, 4)
        if self._filter is None or not len(boxes):
            return boxes, infos
        reduced_size = (reduced.shape[1], reduced.shape[0])
        crops = []
        for box in boxes:
            x0, y0, x1, y1 = pixel_box(box, reduced_size) or (
                0,
                0,
                reduced_size[0],
                reduced_size[1],
            )
            crops.append(reduced[y0:y1, x0:x1])
        probabilities = self._filter.classify(crops, list(settings.filter_labels))
        keep = []
        for index, row in enumerate(probabilities):
            best = settings.filter_labels[int(np.argmax(row))]
            infos[index]["filter_label"] = best
            infos[index]["filter_probabilities"] = {
                label: round(float(p), 4)
                for label, p in zip(settings.filter_labels, row, strict=True)
            }
            if best not in settings.reject_labels:
                keep.append(index)
        rejected = len(boxes) - len(keep)
        if rejected:
            log.debug("filter rejected %d of %d boxes", rejected, len(boxes))
        return boxes[keep], [infos[i] for i in keep]


def tile_pixels(settings: RoiSettings, gsd_cm: float) -> tuple[int, int]:
    """Returns (tile side, overlap) in working pixels at ``gsd_cm`` cm/px: ``tile_size_m`` / ``tile_overlap_m``
    converted, unless ``tile_size`` / ``tile_overlap`` are given in pixels (800 px = 2 m at 0.25 cm/px)."""
    tile = settings.tile_size
    if tile is None:
        tile = max(1, round(length_px(settings.tile_size_m * 100, gsd_cm)))
    overlap = settings.tile_overlap
    if overlap is None:
        overlap = round(length_px(settings.tile_overlap_m * 100, gsd_cm))
    return tile, overlap


def _frame_notes(path: Path) -> tuple[geo.GeoInfo | None, list[str]]:
    """Returns the frame's georeferencing (or None) and warnings about its format."""
    notes: list[str] = []
    info = None
    if path.suffix.lower() in geo.GEO_SUFFIXES:
        if geo.rasterio_available():
            info = geo.read_geo_info(path)
            if info is not None and info.crs is None:
                notes.append(
                    "GeoTIFF has a geotransform but no CRS: tiles get transforms but no crs; set the CRS (gdal_edit.py -a_srs) to georeference them"
                )
        else:
            notes.append(
                "rasterio is not installed: TIFF read without georeferencing (pip install rasterio)"
            )
        scaling = geo.frame_scaling(path) if info is not None else sample_scaling(path)
        if scaling is not None:
            notes.append(f"{scaling.note()} for the tiles")
    return info, notes


def _process_frame(
    path: Path, frame_id: str, settings: RoiSettings, finder: _RoadBoxFinder, tiles_dir: Path
) -> dict[str, Any]:
    tracemalloc.reset_peak()
    geo_info, warnings = _frame_notes(path)
    use_windows = geo_info is not None
    record: dict[str, Any] = {"frame": str(path), "warnings": warnings}
    gsd = frame_gsd(path, geo_info, settings.gsd_cm)
    warnings.extend(gsd.notes)
    working = settings.target_gsd_cm or gsd.cm
    tile, overlap = tile_pixels(settings, working)
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} px must be smaller than the tile ({tile} px at {working:g} cm/px)")
    if tile < MIN_TILE_PX:
        warnings.append(
            f"{path.name}: a {settings.tile_size_m:g} m tile is only {tile} px at {working:g} cm/px; "
            "set roi.tile_size (pixels) or roi.target_gsd_cm"
        )
    record["gsd"] = {**gsd.record(), "working_cm": round(working, 6), "scale": round(gsd.cm / working, 6),
                     "tile_px": tile, "overlap_px": overlap}
    if settings.mode == "none":
        full_size = (geo_info.width, geo_info.height) if geo_info else image_size(path)
        boxes = np.array([[0, 0, full_size[0], full_size[1]]], dtype=np.float64)
        infos: list[dict[str, Any]] = [{"source": "whole frame"}]
    else:
        reduced, full_size = (
            geo.read_reduced(path, settings.long_side)
            if use_windows
            else read_image_reduced(path, settings.long_side)
        )
        reduced_boxes, infos = finder.find(reduced)
        boxes = scale_boxes(reduced_boxes, (reduced.shape[1], reduced.shape[0]), full_size)
    record["frame_size"] = list(full_size)
    pixel_boxes = [pixel_box(box, full_size) for box in boxes]
    kept = [(box, info) for box, info in zip(pixel_boxes, infos, strict=True) if box is not None]
    merged, members = merge_boxes(
        np.array([box for box, _ in kept], dtype=np.float64).reshape(-1, 4), settings.merge_iou
    )
    record["boxes"] = [{**info, "box": list(box)} for box, info in kept]
    record["regions"] = [
        {"box": [int(v) for v in region], "members": group}
        for region, group in zip(merged, members, strict=True)
    ]
    layout = _TileLayout(tile, overlap, settings.edge_rule, gsd.cm / working, working)
    record["tiles"] = _write_tiles(path, frame_id, merged, full_size, layout, tiles_dir, geo_info)
    record["processed_share"] = round(
        sum(t["valid"][0] * t["valid"][1] for t in record["tiles"]) / layout.scale**2 / (full_size[0] * full_size[1]), 4
    )
    if not merged.size:
        log.info("%s: no road found", path)
    if merged.size and not record["tiles"]:
        warnings.append(
            f"road boxes are all smaller than a {tile}px tile and edge_rule=drop: no tile"
        )
    record["memory"] = {
        "peak_array_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1),
        "max_rss_mb": _max_rss_mb(),
    }
    return record


@dataclasses.dataclass(frozen=True)
class _TileLayout:
    """How a frame is tiled: tile side and overlap in working pixels, the resampling and its GSD."""

    tile: int
    overlap: int
    rule: EdgeRule
    scale: float
    """working pixels per frame pixel (1: no resampling)"""
    gsd_cm: float
    """GSD of the working pixels"""


def _working_source(
    path: Path, frame: np.ndarray | None, geo_info: geo.GeoInfo | None, windows: list[TileWindow], layout: _TileLayout,
    full_size: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, int]]:
    """Returns (the working-resolution pixels under ``windows``, their origin in working pixels)."""
    x0 = min(w.x for w in windows)
    y0 = min(w.y for w in windows)
    x1 = max(w.x + w.valid_width for w in windows)
    y1 = max(w.y + w.valid_height for w in windows)
    if layout.scale == 1:
        if geo_info is not None:
            return geo.read_window(path, (x0, y0, x1, y1), keep_nodata=True), (x0, y0)
        return frame, (0, 0)  # type: ignore[return-value]
    # frame pixels under the working box, read whole (with a margin for rounding), then resampled
    fx0, fy0 = int(x0 / layout.scale), int(y0 / layout.scale)
    fx1 = min(full_size[0], int(np.ceil(x1 / layout.scale)))
    fy1 = min(full_size[1], int(np.ceil(y1 / layout.scale)))
    part = geo.read_window(path, (fx0, fy0, fx1, fy1), keep_nodata=True) if geo_info is not None else frame[fy0:fy1, fx0:fx1]  # type: ignore[index]
    size = (max(1, round((fx1 - fx0) * layout.scale)), max(1, round((fy1 - fy0) * layout.scale)))
    return np.ascontiguousarray(resample_image(part, size)), (round(fx0 * layout.scale), round(fy0 * layout.scale))


def _write_tiles(
    path: Path,
    frame_id: str,
    regions: np.ndarray,
    full_size: tuple[int, int],
    layout: _TileLayout,
    tiles_dir: Path,
    geo_info: geo.GeoInfo | None,
) -> list[dict[str, Any]]:
    if not regions.size:
        return []
    frame = None if geo_info is not None else read_image(path, keep_nodata=True)  # the one full-resolution decode
    if frame is not None and (frame.shape[1], frame.shape[0]) != tuple(full_size):
        raise ImageReadError(
            f"{path}: full-resolution size {frame.shape[1]}x{frame.shape[0]} differs from its header {full_size[0]}x{full_size[1]}"
        )
    scale = layout.scale
    working_size = (max(1, round(full_size[0] * scale)), max(1, round(full_size[1] * scale)))
    tiles: list[dict[str, Any]] = []
    region_boxes = [pixel_box(np.asarray(region, dtype=np.float64) * scale, working_size) for region in regions]
    groups = tile_boxes(
        [box for box in region_boxes if box is not None], working_size, layout.tile, layout.overlap, layout.rule
    )
    try:
        _write_groups(path, frame, geo_info, groups, layout, full_size, frame_id, tiles_dir, tiles)
    except BaseException:
        for entry in tiles:  # a frame is all its tiles or none: a failed one leaves no tile behind
            (tiles_dir.parent / entry["path"]).unlink(missing_ok=True)
        raise
    return tiles


def _write_groups(
    path: Path, frame: np.ndarray | None, geo_info: geo.GeoInfo | None, groups: list[tuple[Any, list[TileWindow]]],
    layout: _TileLayout, full_size: tuple[int, int], frame_id: str, tiles_dir: Path, tiles: list[dict[str, Any]],
) -> None:
    """Cuts and writes the tiles of ``groups``, appending each one's record to ``tiles`` once it is written."""
    scale = layout.scale
    seen: set[tuple[int, int, int, int]] = set()
    for _, windows in groups:
        if not windows:
            continue
        source, origin = _working_source(path, frame, geo_info, windows, layout, full_size)
        for window in windows:
            key = (window.x, window.y, window.width, window.height)
            if key in seen:  # overlapping regions can ask for the same tile (rules other than grow)
                continue
            seen.add(key)
            offset = (round(window.x / scale), round(window.y / scale))
            tile_id = f"{frame_id}_x{offset[0]}_y{offset[1]}"
            relative = f"{TILES_DIR}/{tile_id}.png"
            local = dataclasses.replace(window, x=window.x - origin[0], y=window.y - origin[1])
            write_image(tiles_dir.parent / relative, _without_full_alpha(cut_tile(source, local), window))
            entry: dict[str, Any] = {
                "id": tile_id,
                "path": relative,
                "offset": list(offset),
                "size": [window.width, window.height],
                "valid": [window.valid_width, window.valid_height],
                "gsd_cm": round(layout.gsd_cm, 6),
            }
            if scale != 1:
                entry["scale"] = round(scale, 6)
                entry["working_offset"] = [window.x, window.y]
            if geo_info is not None:
                entry["crs"] = geo_info.crs
                entry["transform"] = list(geo.tile_transform(geo_info.transform, offset[0], offset[1], scale))
            tiles.append(entry)


def _without_full_alpha(tile: np.ndarray, window: TileWindow) -> np.ndarray:
    """Returns the tile as RGB unless its valid part has no-data pixels (then RGBA, alpha 0: no data)."""
    if tile.shape[2] == 4 and tile[: window.valid_height, : window.valid_width, 3].all():
        return np.ascontiguousarray(tile[..., :3])
    return tile


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    return counts


@dataclass(frozen=True)
class RoiTask:
    """The roi stage's work on one worker: detector and filter loaded once, then one frame at a time."""

    settings: RoiSettings
    tiles_dir: Path

    def load(self) -> Any:
        """Returns the per-frame function ((frame id, path) -> record), models loaded."""
        finder = _RoadBoxFinder(self.settings)
        finder.load()
        if not tracemalloc.is_tracing():  # the per-frame peak memory in the record
            tracemalloc.start()
        return lambda pair: _process_frame(pair[1], pair[0], self.settings, finder, self.tiles_dir)


def run(
    workspace: Workspace,
    settings: Settings,
    frames: list[Path],
    *,
    skipped: dict[Path, str] | None = None,
) -> StageManifest:
    """Returns the roi manifest after finding road boxes in ``frames`` and tiling them.

    Args:
        workspace: the run directory; tiles go to ``roi/tiles/``.
        settings: resolved settings; ``settings.roi`` drives this stage.
        frames: image files (e.g. from :func:`roadparse.io.images.scan_images`).
        skipped: entries of the frames folder that are not image files, with the reason
            (``scan_images``); listed in the summary's ``skipped`` and ``problems``.

    A frame that cannot be read is recorded as failed with its message and the run
    goes on; a frame with no road is recorded with zero tiles and counted.
    """
    roi = settings.roi
    if roi.tile_overlap is not None and roi.tile_size is not None and roi.tile_overlap >= roi.tile_size:
        raise ValueError(
            f"roi.tile_overlap ({roi.tile_overlap}) must be smaller than roi.tile_size ({roi.tile_size})"
        )
    if roi.tile_overlap is None and roi.tile_size is None and roi.tile_overlap_m >= roi.tile_size_m:
        raise ValueError(
            f"roi.tile_overlap_m ({roi.tile_overlap_m}) must be smaller than roi.tile_size_m ({roi.tile_size_m})"
        )
    items = frame_items([Path(p) for p in frames])
    stage = workspace.begin("roi", roi, inputs={"frames": _frames_fingerprint(items)})
    if stage.manifest is not None:  # finished with these settings and inputs
        log.info("roi: complete, nothing to do")
        return stage.manifest
    tiles_dir = workspace.stage_dir("roi") / TILES_DIR
    tiles_dir.mkdir(parents=True, exist_ok=True)
    started_tracing = not tracemalloc.is_tracing()
    executor = make_executor(settings.run)
    try:
        process_items(
            stage,
            {key: (key, path) for key, path in items.items()},
            RoiTask(roi, tiles_dir),
            desc="roi",
            unit="frame",
            executor=executor,
        )
    finally:
        executor.close()
        if started_tracing and tracemalloc.is_tracing():
            tracemalloc.stop()
    records = stage.items()
    problems = {
        key: "; ".join(record["warnings"])
        for key, record in records.items()
        if record.get("warnings")
    }
    problems.update({key: f"failed: {error}" for key, error in stage.failures().items()})
    skipped_names = {path.name: reason for path, reason in sorted((skipped or {}).items())}
    problems.update({name: f"skipped: {reason}" for name, reason in skipped_names.items()})
    summary = {
        "frames": len(items),
        "tiles": sum(len(record["tiles"]) for record in records.values()),
        "frames_without_road": sorted(
            key for key, record in records.items() if not record["regions"]
        ),
        "frames_with_warnings": sum(1 for record in records.values() if record.get("warnings")),
        "gsd_sources": _count(record.get("gsd", {}).get("source") for record in records.values()),
        "max_processed_share": max((record.get("processed_share", 0.0) for record in records.values()), default=0.0),
        "problems": problems,
        "skipped": skipped_names,
        "mode": roi.mode,
    }
    return stage.finish(summary)
