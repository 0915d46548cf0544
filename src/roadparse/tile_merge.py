"""Pure geometry of one mask per object across tiles: no images or files here.

Masks are generated per tile (as the paper does). At the frame level two kinds of
links join masks of different tiles into one object:

- ``duplicate``: the tiles overlap and the two masks, both cut to the overlap, have an
  IoU of at least ``duplicate_iou`` (the same object seen twice);
- ``border``: the tiles touch along an edge and the two masks' pixels on the two sides of
  that edge (the last row/column of one tile, the first of the other) agree with an IoU
  of at least ``border_iou`` (an object cut by the border, continued on the other side).

Linked masks are grouped transitively (a road cut by many tiles becomes one object).
Tile positions are in working pixels (the resolution the tiles were cut at);
masks are (n, h, w) bool stacks over each tile's valid part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TilePlace:
    """Where a tile's valid part lies in the (working-resolution) frame."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        """Returns one past the last column."""
        return self.x + self.width

    @property
    def y1(self) -> int:
        """Returns one past the last row."""
        return self.y + self.height


def _iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Returns the (n, m) IoU of (n, P) and (m, P) bool rows (0 where both are empty)."""
    a = first.reshape(len(first), -1).astype(np.float32)
    b = second.reshape(len(second), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _shared_edge(first: TilePlace, second: TilePlace) -> tuple[str, int, int, int] | None:
    """Returns (axis, side, lo, hi) of a shared edge: ``x`` when ``first`` lies left of ``second``
    (side -1) or right of it (side +1), ``y`` likewise above/below; [lo, hi) the shared run."""
    lo_y, hi_y = max(first.y, second.y), min(first.y1, second.y1)
    lo_x, hi_x = max(first.x, second.x), min(first.x1, second.x1)
    if hi_y > lo_y and first.x1 == second.x:
        return "x", -1, lo_y, hi_y
    if hi_y > lo_y and second.x1 == first.x:
        return "x", 1, lo_y, hi_y
    if hi_x > lo_x and first.y1 == second.y:
        return "y", -1, lo_x, hi_x
    if hi_x > lo_x and second.y1 == first.y:
        return "y", 1, lo_x, hi_x
    return None


def _edge_pixels(place: TilePlace, masks: np.ndarray, axis: str, last: bool, lo: int, hi: int) -> np.ndarray:
    """Returns (n, hi - lo) bool: the masks on the tile's first or last column (axis x) or row (axis y)."""
    if axis == "x":
        column = place.width - 1 if last else 0
        return masks[:, lo - place.y : hi - place.y, column]
    row = place.height - 1 if last else 0
    return masks[:, row, lo - place.x : hi - place.x]


def match_masks(
    first: TilePlace,
    first_masks: np.ndarray,
    second: TilePlace,
    second_masks: np.ndarray,
    border_iou: float = 0.5,
    duplicate_iou: float = 0.5,
) -> list[tuple[int, int, str]]:
    """Returns (mask of first, mask of second, ``duplicate`` | ``border``) for every linked pair.

    Args:
        first, second: the two tiles' valid parts in the frame.
        first_masks: (n, first.height, first.width) bool.
        second_masks: (m, second.height, second.width) bool.
        border_iou: IoU of the pixels on the two sides of a shared edge needed to link.
        duplicate_iou: IoU inside the overlap of two overlapping tiles needed to link.
    """
    if not len(first_masks) or not len(second_masks):
        return []
    x0, y0 = max(first.x, second.x), max(first.y, second.y)
    x1, y1 = min(first.x1, second.x1), min(first.y1, second.y1)
    if x1 > x0 and y1 > y0:
        a = first_masks[:, y0 - first.y : y1 - first.y, x0 - first.x : x1 - first.x]
        b = second_masks[:, y0 - second.y : y1 - second.y, x0 - second.x : x1 - second.x]
        iou, kind, threshold = _iou_matrix(a, b), "duplicate", duplicate_iou
    else:
        edge = _shared_edge(first, second)
        if edge is None:
            return []
        axis, side, lo, hi = edge
        a = _edge_pixels(first, first_masks, axis, side < 0, lo, hi)
        b = _edge_pixels(second, second_masks, axis, side > 0, lo, hi)
        iou, kind, threshold = _iou_matrix(a, b), "border", border_iou
    rows, cols = np.nonzero(iou >= threshold)
    return [(int(i), int(j), kind) for i, j in zip(rows, cols, strict=True)]


def group_objects(counts: list[int], links: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int]]]:
    """Returns the objects with two or more masks: lists of (tile, mask), each sorted, in order of their first member.

    Args:
        counts: masks per tile.
        links: (tile a, mask a, tile b, mask b) pairs that belong to one object.
    """
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    parent = list(range(int(starts[-1])))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for tile_a, mask_a, tile_b, mask_b in links:
        ra, rb = root(int(starts[tile_a]) + mask_a), root(int(starts[tile_b]) + mask_b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[tuple[int, int]]] = {}
    for tile, count in enumerate(counts):
        for mask in range(count):
            groups.setdefault(root(int(starts[tile]) + mask), []).append((tile, mask))
    return [members for _, members in sorted(groups.items()) if len(members) > 1]
