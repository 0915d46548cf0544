"""Label maps of a prediction folder placed on the ground, one mosaic per frame.

``roadparse predict`` writes, per input, ``<stem>_label.png``, ``<stem>_confidence.png``
and a record in ``summary.json`` (pixel area, and CRS + transform when the input was
georeferenced). Tiles of one frame (named by a ``roi`` work directory, or GeoTIFF tiles on
one pixel grid) are pasted into one frame mosaic, so objects cut by tile borders are one
connected region again before anything is vectorised. Tiles resampled by
``roi.target_gsd_cm`` are pasted on the working grid (their ``working_offset``) with the
working GSD as pixel size, so the mosaic keeps their resolution and lies where the frame does.

Coordinates: a georeferenced input keeps its CRS; any other is placed in a local metric
frame (x to the right, y up, origin at the frame's top-left corner, no CRS) from its pixel
size.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from roadparse.io.labels import IGNORE_INDEX, read_label_png

if TYPE_CHECKING:
    from roadparse.artifacts import Tile

log = logging.getLogger(__name__)

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class FrameRaster:
    """One frame's labels on the ground."""

    frame: str
    labels: np.ndarray
    """(H, W) uint8 class ids; IGNORE_INDEX where no prediction covers the frame"""
    confidence: np.ndarray | None
    """(H, W) uint8 class probability × 255, or None when the prediction folder has none"""
    transform: Transform
    """pixel (col, row) → (x, y), GDAL/rasterio order"""
    crs_wkt: str | None
    tiles: tuple[tuple[str, tuple[int, int, int, int]], ...]
    """(tile id, (x0, y0, x1, y1) in mosaic pixels) of every raster pasted in"""

    @property
    def pixel_area_m2(self) -> float:
        """Returns the ground area of one pixel (transform units squared)."""
        a, b, _, d, e, _ = self.transform
        return abs(a * e - b * d)

    def tiles_in(self, box: tuple[int, int, int, int]) -> list[str]:
        """Returns the ids of the tiles overlapping the pixel box (x0, y0, x1, y1), end-exclusive."""
        x0, y0, x1, y1 = box
        return [tile for tile, (tx0, ty0, tx1, ty1) in self.tiles if tx0 < x1 and x0 < tx1 and ty0 < y1 and y0 < ty1]


@dataclass(frozen=True)
class _Piece:
    tile: str
    frame: str
    label_path: Path
    confidence_path: Path | None
    transform: Transform
    crs_wkt: str | None
    valid: tuple[int, int] | None
    """(width, height) of the part holding frame pixels (roi tiles are padded)"""


def read_summary(pred_dir: Path) -> dict[str, Any]:
    """Returns ``summary.json`` of a prediction folder.

    Raises:
        ValueError: the folder has no summary (not written by ``roadparse predict``).
    """
    path = pred_dir / "summary.json"
    if not path.is_file():
        raise ValueError(f"{path}: not found; PRED_DIR must be an output folder of `roadparse predict`")
    return json.loads(path.read_text())


def _local_transform(pixel_size: float, offset: tuple[int, int]) -> Transform:
    return (pixel_size, 0.0, offset[0] * pixel_size, 0.0, -pixel_size, -offset[1] * pixel_size)


def _pixel_size_m(record: dict[str, Any], tile: Tile | None, gsd_cm: float | None) -> float | None:
    """Returns the ground size of one predicted pixel in metres, or None when nothing says it.

    ``gsd_cm`` (the user's, of the frames) wins; a roi tile resampled to a working GSD has
    pixels ``1 / scale`` frame pixels wide. Then the tile's recorded GSD, then predict's pixel area.
    """
    scale = tile.scale if tile is not None else 1.0
    if gsd_cm is not None:
        return gsd_cm / 100.0 / scale
    if tile is not None and tile.gsd_cm is not None:
        return float(tile.gsd_cm) / 100.0
    if record.get("pixel_area_m2"):
        return float(record["pixel_area_m2"]) ** 0.5
    return None


def _pieces(pred_dir: Path, summary: dict[str, Any], tiles: dict[str, Any], gsd_cm: float | None) -> list[_Piece]:
    """Returns every predicted raster with its frame, transform and CRS."""
    pieces = []
    for record in summary["images"]:
        stem = Path(record["input"]).stem
        label_path = pred_dir / f"{stem}_label.png"
        if not label_path.is_file():
            log.warning("%s: missing; %s is skipped", label_path, record["input"])
            continue
        confidence_path = pred_dir / f"{stem}_confidence.png"
        tile = tiles.get(stem)
        frame = Path(tile.frame).stem if tile is not None else stem
        valid = tuple(tile.valid) if tile is not None else None
        if record.get("transform") is not None:
            transform, crs = tuple(record["transform"]), record.get("crs")
        else:
            pixel = _pixel_size_m(record, tile, gsd_cm)
            if pixel is None:
                raise ValueError(f"{pred_dir / 'summary.json'}: {record['input']} has no pixel size; pass --gsd-cm")
            transform, crs = _local_transform(pixel, tile.position if tile is not None else (0, 0)), None
        pieces.append(_Piece(stem, frame, label_path, confidence_path if confidence_path.is_file() else None,
                             transform, crs, valid))
    return pieces


def _grid_offset(reference: Transform, transform: Transform) -> tuple[int, int] | None:
    """Returns the integer pixel offset of ``transform``'s origin in ``reference``'s grid, or None off-grid."""
    a, b, c, d, e, f = reference
    if not np.allclose(reference[:2] + reference[3:5], transform[:2] + transform[3:5], rtol=1e-9, atol=1e-12):
        return None
    det = a * e - b * d
    dx, dy = transform[2] - c, transform[5] - f
    col, row = (e * dx - b * dy) / det, (a * dy - d * dx) / det
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        return None
    return round(col), round(row)


def _mosaic(frame: str, pieces: list[_Piece]) -> FrameRaster:
    """Returns one frame's pieces pasted on the first piece's pixel grid (later pieces win where they overlap)."""
    reference = pieces[0].transform
    placed = []
    for piece in pieces:
        offset = _grid_offset(reference, piece.transform)
        if offset is None or piece.crs_wkt != pieces[0].crs_wkt:
            raise ValueError(f"{piece.label_path}: not on the pixel grid of {pieces[0].label_path} (frame {frame}); "
                             "export these tiles separately")
        labels = read_label_png(piece.label_path)
        if piece.valid is not None:
            labels = labels[: piece.valid[1], : piece.valid[0]]
        confidence = None
        if piece.confidence_path is not None:
            from PIL import Image

            with Image.open(piece.confidence_path) as image:
                confidence = np.asarray(image)[: labels.shape[0], : labels.shape[1]]
        placed.append((piece, offset, labels, confidence))
    x0 = min(o[0] for _, o, _, _ in placed)
    y0 = min(o[1] for _, o, _, _ in placed)
    x1 = max(o[0] + lab.shape[1] for _, o, lab, _ in placed)
    y1 = max(o[1] + lab.shape[0] for _, o, lab, _ in placed)
    canvas = np.full((y1 - y0, x1 - x0), IGNORE_INDEX, dtype=np.uint8)
    with_confidence = all(conf is not None for *_, conf in placed)
    conf_canvas = np.zeros(canvas.shape, dtype=np.uint8) if with_confidence else None
    boxes = []
    for piece, (ox, oy), labels, confidence in placed:
        rows, cols = slice(oy - y0, oy - y0 + labels.shape[0]), slice(ox - x0, ox - x0 + labels.shape[1])
        canvas[rows, cols] = labels
        if conf_canvas is not None and confidence is not None:  # every piece has one, or none is painted
            conf_canvas[rows, cols] = confidence
        boxes.append((piece.tile, (cols.start, rows.start, cols.stop, rows.stop)))
    a, b, c, d, e, f = reference
    transform = (a, b, a * x0 + b * y0 + c, d, e, d * x0 + e * y0 + f)
    return FrameRaster(frame, canvas, conf_canvas, transform, pieces[0].crs_wkt, tuple(boxes))


def read_frames(pred_dir: str | Path, workdir: str | Path | None = None, gsd_cm: float | None = None) -> list[FrameRaster]:
    """Returns the predictions of ``pred_dir`` as one mosaic per frame.

    Args:
        pred_dir: an output folder of ``roadparse predict``.
        workdir: the ``roi`` work directory whose tiles were predicted: tiles are then
            grouped by frame and placed at their offsets (padding dropped). Without it each
            input is its own frame.
        gsd_cm: pixel size in cm for inputs without a CRS (default: the one predict used).
    """
    pred_dir = Path(pred_dir)
    summary = read_summary(pred_dir)
    tiles: dict[str, Any] = {}
    if workdir is not None:
        from roadparse.artifacts import list_tiles
        from roadparse.workspace import Workspace

        tiles = {tile.id: tile for tile in list_tiles(Workspace(Path(workdir)))}
    by_frame: dict[str, list[_Piece]] = {}
    for piece in _pieces(pred_dir, summary, tiles, gsd_cm):
        by_frame.setdefault(piece.frame, []).append(piece)
    if not by_frame:
        raise ValueError(f"{pred_dir}: no label maps to export")
    return [_mosaic(frame, pieces) for frame, pieces in sorted(by_frame.items())]
