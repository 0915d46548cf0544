"""Overlapping frames' ground shared out so that each piece is counted once: geometries in, geometries out.

Drone frames overlap 60-80 %. Each piece of imaged ground is answered for by one frame: among
the frames whose footprint covers it, the one whose centre is nearest (the centre of a nadir
frame is its sharpest, least tilted part); on a tie, the frame listed first. The cells do not
overlap and together make the union of the footprints. ``roadparse export`` (survey totals)
and ``roadparse report`` (chainage intervals) both measure through :func:`nearest_centre_cells`,
so their totals agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def nearest_centre_cells(footprints: Sequence[Any], centres: np.ndarray) -> list[Any]:
    """Returns one shapely geometry per frame: the part of its footprint it answers for (see the module docstring).

    Args:
        footprints: each frame's imaged ground (shapely geometries in one map CRS, metres).
        centres: (N, 2) the frames' centres in the same CRS.
    """
    points = [(float(x), float(y)) for x, y in np.asarray(centres, dtype=np.float64).reshape(-1, 2)]
    if len(points) != len(footprints):
        raise ValueError(f"{len(footprints)} footprints but {len(points)} centres")
    sizes = [math.sqrt(fp.area) for fp in footprints if not fp.is_empty]
    span = max((math.dist(a, b) for a in points for b in points), default=0.0)
    reach = 10.0 * (max(sizes, default=1.0) + span)
    cells = []
    for i, footprint in enumerate(footprints):
        cell = footprint
        for j, other in enumerate(footprints):
            if j == i or other.is_empty or not other.intersects(cell):
                continue
            if points[i] == points[j]:  # the same centre: the frame listed first keeps the shared ground
                if j < i:
                    cell = cell.difference(other)
                continue
            cell = cell.difference(other.intersection(_nearer_half(points[i], points[j], reach)))
        cells.append(cell)
    return cells


def _nearer_half(near: tuple[float, float], far: tuple[float, float], reach: float) -> Any:
    """Returns the polygon (half of a square of side ``2 * reach``) of points nearer ``far`` than ``near``."""
    import shapely

    (x0, y0), (x1, y1) = near, far
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    norm = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / norm, (y1 - y0) / norm
    px, py = -uy, ux
    corners = [(mx + px * reach, my + py * reach), (mx + px * reach + ux * reach, my + py * reach + uy * reach),
               (mx - px * reach + ux * reach, my - py * reach + uy * reach), (mx - px * reach, my - py * reach)]
    return shapely.Polygon(corners)
