"""Pure box and tile geometry of the roi stage: no images are read here.

Coordinates are pixels of the EXIF-oriented frame (the orientation users see), with
``x`` to the right and ``y`` down. Boxes are ``(x0, y0, x1, y1)``, half-open: a box
``(0, 0, 800, 800)`` holds 800×800 pixels.

Edge rules for tiling a box into ``tile × tile`` windows with ``overlap`` (step
``tile - overlap``), applied per axis:

- ``grow`` (default): the fewest windows laid every ``step`` that cover the box, as one
  group centred on the box and moved inside the frame, so the part of the group outside
  the box is real frame context. Only where the frame itself is shorter than the group
  does the last window run past the frame edge and get zero-padded. No frame pixel is in
  two windows unless ``overlap`` asks for it; a frame smaller than a tile gives one padded tile.
  Several boxes of one frame (:func:`tile_boxes`): boxes whose windows would share a pixel
  are tiled by one grid, so this holds across boxes too.
- ``shift``: windows start at the box start every ``step``; the last one is shifted
  inward so that it ends on the box end. Every window lies inside the frame and is
  ``tile`` wide; a box narrower than a tile gets one window centred on it, grown into
  the frame around the box. A frame narrower than a tile gives one window that is
  the whole frame (a smaller tile, no padding).
- ``pad``: windows start at the box start every ``step`` until the box end is
  covered; the last one may run past the box (real frame pixels) and past the frame
  edge, where it is zero-padded (``valid`` < ``size``). With zero overlap every box
  pixel is in exactly one window. A frame narrower than a tile gives one padded tile.
- ``drop``: only windows that fit entirely inside the box; the remainder at the
  box's end (and any box narrower than a tile) is not tiled.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

EdgeRule = Literal["grow", "shift", "pad", "drop"]
EDGE_RULES: tuple[str, ...] = ("grow", "shift", "pad", "drop")


@dataclass(frozen=True)
class TileWindow:
    """One tile cut from a frame: where it starts, its image size and its frame part."""

    x: int
    y: int
    width: int
    height: int
    valid_width: int
    """Columns ``[0, valid_width)`` of the tile are frame pixels; the rest is padding."""
    valid_height: int

    def frame_box(self) -> tuple[int, int, int, int]:
        """Returns the (x0, y0, x1, y1) frame pixels the tile holds (its valid part)."""
        return self.x, self.y, self.x + self.valid_width, self.y + self.valid_height


def scale_boxes(
    boxes: np.ndarray, reduced_size: tuple[int, int], full_size: tuple[int, int]
) -> np.ndarray:
    """Returns boxes mapped from a reduced frame to the full-resolution frame.

    Args:
        boxes: (N, 4) float boxes (x0, y0, x1, y1) in reduced-frame pixels.
        reduced_size: (width, height) of the reduced frame the boxes refer to.
        full_size: (width, height) of the full-resolution frame, same orientation.

    Returns:
        (N, 4) float64 boxes in full-resolution pixels. The scale is per axis
        (``full / reduced``), so rounding in the reduced size does not skew boxes.
    """
    reduced: npt.NDArray[np.float64] = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale_x = full_size[0] / reduced_size[0]
    scale_y = full_size[1] / reduced_size[1]
    return reduced * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float64)


def pixel_box(
    box: np.ndarray | tuple[float, ...], frame_size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Returns the smallest integer box holding ``box``, clipped to the frame; None when empty.

    Args:
        box: (x0, y0, x1, y1) float box.
        frame_size: (width, height) of the frame.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = frame_size
    ix0, iy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    ix1, iy1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return ix0, iy0, ix1, iy1


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Returns the (N, M) float64 IoU between (N, 4) and (M, 4) boxes."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(first[:, None, :2], second[None, :, :2])
    hi = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_first = np.prod(first[:, 2:] - first[:, :2], axis=1)
    area_second = np.prod(second[:, 2:] - second[:, :2], axis=1)
    union = area_first[:, None] + area_second[None, :] - inter
    iou: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def merge_boxes(boxes: np.ndarray, merge_iou: float = 0.0) -> tuple[np.ndarray, list[list[int]]]:
    """Returns overlapping boxes merged into their enclosing boxes, until none overlap.

    Two boxes are merged when their IoU exceeds ``merge_iou`` (with 0, when they share
    any area). A merged box can overlap further boxes, so merging repeats until stable.

    Args:
        boxes: (N, 4) boxes (x0, y0, x1, y1).
        merge_iou: IoU above which two boxes become one.

    Returns:
        ((K, 4) float64 merged boxes, for each merged box the indices of the input
        boxes it encloses), ordered by the smallest member index.
    """
    current = [
        np.asarray(b, dtype=np.float64) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ]
    members = [[i] for i in range(len(current))]
    changed = True
    while changed:
        changed = False
        for i, j in itertools.combinations(range(len(current)), 2):
            if box_iou(current[i], current[j])[0, 0] > merge_iou:
                current[i] = np.concatenate(
                    [
                        np.minimum(current[i][:2], current[j][:2]),
                        np.maximum(current[i][2:], current[j][2:]),
                    ]
                )
                members[i] = sorted(members[i] + members[j])
                del current[j], members[j]
                changed = True
                break
    if not current:
        return np.zeros((0, 4)), []
    return np.stack(current), members


def axis_windows(
    start: int, end: int, extent: int, tile: int, overlap: int, rule: EdgeRule
) -> list[tuple[int, int, int]]:
    """Returns the (start, size, valid) windows tiling ``[start, end)`` on one axis.

    Args:
        start: first pixel of the box on this axis.
        end: one past the last pixel of the box.
        extent: frame size on this axis.
        tile: tile side.
        overlap: pixels shared by neighbouring windows (< tile).
        rule: edge rule, see the module docstring.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile size {tile})")
    if rule not in EDGE_RULES:
        raise ValueError(f"unknown edge rule {rule!r}; valid: {', '.join(EDGE_RULES)}")
    if not 0 <= start < end <= extent:
        raise ValueError(f"box [{start}, {end}) is empty or outside the frame [0, {extent})")
    step = tile - overlap
    windows: list[tuple[int, int, int]] = []
    if rule == "grow":
        count = 1 if end - start <= tile else math.ceil((end - start - tile) / step) + 1
        span = (count - 1) * step + tile
        first = min(max(start - (span - (end - start)) // 2, 0), max(extent - span, 0))
        return [(first + k * step, tile, min(tile, extent - first - k * step)) for k in range(count)]
    if rule == "shift":
        if extent <= tile:
            return [(0, extent, extent)]
        if end - start <= tile:
            centred = start - (tile - (end - start)) // 2
            return [(min(max(centred, 0), extent - tile), tile, tile)]
        position = start
        while position + tile < end:
            windows.append((position, tile, tile))
            position += step
        windows.append((end - tile, tile, tile))
    elif rule == "pad":
        position = start
        while True:
            windows.append((position, tile, min(tile, extent - position)))
            if position + tile >= end:
                break
            position += step
    else:
        position = start
        while position + tile <= end:
            windows.append((position, tile, tile))
            position += step
    return windows


def tile_box(
    box: tuple[int, int, int, int],
    frame_size: tuple[int, int],
    tile: int,
    overlap: int = 0,
    rule: EdgeRule = "grow",
) -> list[TileWindow]:
    """Returns the tiles covering an integer box of a frame, row by row.

    Args:
        box: (x0, y0, x1, y1) integer box inside the frame.
        frame_size: (width, height) of the frame.
        tile: tile side in pixels.
        overlap: pixels shared by neighbouring tiles.
        rule: edge rule (grow / shift / pad / drop), see the module docstring.
    """
    x0, y0, x1, y1 = box
    columns = axis_windows(x0, x1, frame_size[0], tile, overlap, rule)
    rows = axis_windows(y0, y1, frame_size[1], tile, overlap, rule)
    return [
        TileWindow(x, y, width, height, valid_width, valid_height)
        for (y, height, valid_height) in rows
        for (x, width, valid_width) in columns
    ]


def _intersects(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> bool:
    """Returns whether two half-open (x0, y0, x1, y1) boxes share a pixel."""
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def enclosing_box(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """Returns the smallest (x0, y0, x1, y1) box holding every box of a non-empty list."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _group_windows(
    boxes: list[tuple[int, int, int, int]], frame_size: tuple[int, int], tile: int, overlap: int
) -> list[TileWindow]:
    """Returns the ``grow`` grid of the boxes' enclosing box, only the cells whose frame part meets a box."""
    grid = tile_box(enclosing_box(boxes), frame_size, tile, overlap, "grow")
    if len(boxes) == 1:  # every cell of a single box's grid meets the box
        return grid
    members = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    return [w for w in grid if _any_pair_intersects(np.array([w.frame_box()], dtype=np.int64), members)]


def _overlapping_groups(groups: list[list[TileWindow]]) -> tuple[int, int] | None:
    """Returns the first pair (i, j), i < j, of window groups sharing a frame pixel; None when all are disjoint."""
    frames = [np.array([w.frame_box() for w in group], dtype=np.int64).reshape(-1, 4) for group in groups]
    for i, j in itertools.combinations(range(len(groups)), 2):
        first, second = frames[i], frames[j]
        if not len(first) or not len(second):
            continue
        if not _intersects(
            (int(first[:, 0].min()), int(first[:, 1].min()), int(first[:, 2].max()), int(first[:, 3].max())),
            (int(second[:, 0].min()), int(second[:, 1].min()), int(second[:, 2].max()), int(second[:, 3].max())),
        ):
            continue  # the groups' extents are apart
        if _any_pair_intersects(first, second):
            return i, j
    return None


def _any_pair_intersects(first: npt.NDArray[np.int64], second: npt.NDArray[np.int64], chunk: int = 256) -> bool:
    """Returns whether any box of (n, 4) ``first`` shares a pixel with any of (m, 4) ``second`` (in chunks of rows)."""
    for start in range(0, len(first), chunk):
        part = first[start : start + chunk]
        lo = np.maximum(part[:, None, :2], second[None, :, :2])
        hi = np.minimum(part[:, None, 2:], second[None, :, 2:])
        if np.any(np.all(hi > lo, axis=2)):
            return True
    return False


def tile_boxes(
    boxes: list[tuple[int, int, int, int]],
    frame_size: tuple[int, int],
    tile: int,
    overlap: int = 0,
    rule: EdgeRule = "grow",
) -> list[tuple[list[tuple[int, int, int, int]], list[TileWindow]]]:
    """Returns the tiles of all road boxes of one frame, as (boxes, their windows) groups.

    Under ``grow`` no frame pixel is in two windows unless ``overlap`` asks, also across
    boxes: each box starts as its own group tiled as :func:`tile_box` does; while the
    windows of two groups share a frame pixel, the groups become one, tiled by one grid
    (the ``grow`` grid of their enclosing box) of which only the cells meeting one of its
    boxes are kept (the empty corners of two diagonal boxes are not tiled). A single box,
    or boxes whose grids stay apart, get exactly the windows of :func:`tile_box`. Other
    rules tile each box on its own (one group per box), as before.

    Args:
        boxes: (x0, y0, x1, y1) integer boxes inside the frame.
        frame_size: (width, height) of the frame.
        tile: tile side in pixels.
        overlap: pixels shared by neighbouring tiles of one grid.
        rule: edge rule (grow / shift / pad / drop), see the module docstring.

    Returns:
        (the group's boxes, its windows row by row) per group, in the order of each
        group's first box.
    """
    if rule != "grow":
        return [([box], tile_box(box, frame_size, tile, overlap, rule)) for box in boxes]
    groups = [[box] for box in boxes]
    windows = [_group_windows(group, frame_size, tile, overlap) for group in groups]
    while (pair := _overlapping_groups(windows)) is not None:
        i, j = pair
        groups[i] = groups[i] + groups[j]
        del groups[j], windows[j]
        windows[i] = _group_windows(groups[i], frame_size, tile, overlap)
    return list(zip(groups, windows, strict=True))


def cut_tile(frame: np.ndarray, window: TileWindow) -> np.ndarray:
    """Returns the (height, width, C) tile of ``frame`` (H, W, C), zero-padded past the frame."""
    x0, y0, x1, y1 = window.frame_box()
    part = frame[y0:y1, x0:x1]
    if part.shape[:2] == (window.height, window.width):
        return np.ascontiguousarray(part)
    tile = np.zeros((window.height, window.width, *frame.shape[2:]), dtype=frame.dtype)
    tile[: part.shape[0], : part.shape[1]] = part
    return tile


def processed_share(windows: list[TileWindow], frame_size: tuple[int, int]) -> float:
    """Returns the frame pixels inside the windows' valid parts, counted with multiplicity, over the frame area.

    1.0 means every frame pixel is processed exactly once; above 1, some pixels are
    processed more than once (overlapping tiles).
    """
    area = frame_size[0] * frame_size[1]
    return sum(w.valid_width * w.valid_height for w in windows) / area if area else 0.0
