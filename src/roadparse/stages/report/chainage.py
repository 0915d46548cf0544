"""Centrelines and their chainage intervals: where along a road (and on which side) a feature lies.

A centreline is a LineString (a road's axis, digitised in its direction of chainage); an
interval is the stretch between two chainages and its *corridor cell*: the ground within
half the corridor width of the line, cut square to the line at both chainages, so the cells
of consecutive intervals tile the corridor without gaps or overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Direction = Literal["forward", "backward", "both"]


@dataclass(frozen=True)
class Road:
    """One centreline feature: its id and name fields and its line (in the survey's CRS)."""

    id: str
    name: str
    line: Any


@dataclass(frozen=True)
class Interval:
    """One chainage interval of a road in one direction."""

    road: Road
    direction: Literal["forward", "backward"]
    index: int
    from_m: float
    to_m: float
    line: Any
    """the interval's stretch of the centreline (LineString, in the direction of travel)"""
    cell: Any
    """its corridor cell (Polygon)"""

    @property
    def length_m(self) -> float:
        """Returns To - From chainage."""
        return self.to_m - self.from_m


def read_centrelines(path: str | Path, crs_wkt: str) -> list[Road]:
    """Returns the LineStrings of a GeoPackage / GeoJSON / Shapefile, reprojected into ``crs_wkt``.

    The ``id`` field (else ``fid``, else the feature's position) and the ``name`` field (else
    empty) are kept. A MultiLineString whose parts join end to end is one road.

    Raises:
        ValueError: the file has no CRS, or a feature is not a (joinable) line.
    """
    import pyogrio.raw
    import shapely
    from pyproj import CRS, Transformer

    meta, fids, geometry, values = pyogrio.raw.read(path, return_fids=True)
    if not meta.get("crs"):
        raise ValueError(f"{path}: no CRS; save the centreline with its CRS (GeoJSON: WGS84 per RFC 7946)")
    fields = {name.lower(): values[i] for i, name in enumerate(meta["fields"])}
    source, target = CRS.from_user_input(meta["crs"]), CRS.from_user_input(crs_wkt)
    transformer = None if source.equals(target) else Transformer.from_crs(source, target, always_xy=True)
    roads = []
    for k, line in enumerate(shapely.from_wkb(geometry)):
        if line.geom_type == "MultiLineString":
            line = shapely.line_merge(line)
        if line.geom_type != "LineString":
            raise ValueError(f"{path}: feature {k} is a {line.geom_type}, not a single line; split or join it first")
        if transformer is not None:
            line = shapely.transform(line, lambda xy: np.stack(transformer.transform(xy[:, 0], xy[:, 1]), axis=1))
        road_id = fields["id"][k] if "id" in fields else (fids[k] if fids is not None else k)
        roads.append(Road(str(road_id), str(fields["name"][k]) if "name" in fields else "", line))
    return roads


def _normal(line: Any, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns (point, unit left normal) of ``line`` at chainage ``s``."""
    step = min(0.05, line.length / 4)
    a = line.interpolate(max(0.0, s - step))
    b = line.interpolate(min(line.length, s + step))
    tx, ty = b.x - a.x, b.y - a.y
    norm = math.hypot(tx, ty) or 1.0
    p = line.interpolate(s)
    return np.array([p.x, p.y]), np.array([-ty / norm, tx / norm])


def corridor_cell(line: Any, s0: float, s1: float, left_m: float, right_m: float, step_m: float = 0.5) -> Any:
    """Returns the polygon from ``right_m`` right to ``left_m`` left of ``line`` between chainages s0 and s1.

    Edges are cut square to the line at s0 and s1; the sides follow the line through points
    every ``step_m`` (and at every vertex); a negative ``left_m``/``right_m`` moves that side across.
    """
    import shapely

    vertices = [float(line.project(shapely.Point(c))) for c in line.coords]
    s = np.unique(np.concatenate([np.linspace(s0, s1, max(2, int(math.ceil((s1 - s0) / step_m)) + 1)),
                                  [v for v in vertices if s0 < v < s1]]))
    left, right = [], []
    for value in s:
        point, normal = _normal(line, float(value))
        left.append(point + normal * left_m)
        right.append(point - normal * right_m)
    return shapely.make_valid(shapely.Polygon(np.vstack([left, right[::-1]])))


def cut_intervals(road: Road, interval_m: float, corridor_m: float, direction: Direction) -> list[Interval]:
    """Returns the intervals of one road: ``interval_m`` long from chainage 0 (the last one shorter).

    ``forward``: chainage from the line's first vertex, the whole corridor; ``backward``: from
    its last vertex; ``both``: one carriageway per direction of travel (right-hand traffic):
    forward intervals hold the right half of the corridor, backward ones the left half, each
    with its own chainage.

    Raises:
        ValueError: a non-positive interval or corridor width.
    """
    import shapely.ops

    if interval_m <= 0 or corridor_m <= 0:
        raise ValueError(f"interval and corridor width must be positive, got {interval_m:g} m and {corridor_m:g} m")
    half = corridor_m / 2
    runs: list[tuple[Literal["forward", "backward"], Any]] = []
    if direction in ("forward", "both"):
        runs.append(("forward", road.line))
    if direction in ("backward", "both"):
        runs.append(("backward", road.line.reverse()))
    # both: the carriageway of each direction of travel lies on its right
    left_m, right_m = (0.0, half) if direction == "both" else (half, half)
    intervals = []
    for way, line in runs:
        cuts = [float(c) for c in np.arange(0.0, line.length, interval_m) if line.length - c > 1e-6] + [line.length]
        for k, (s0, s1) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            stretch = shapely.ops.substring(line, s0, s1)
            intervals.append(Interval(road, way, k, float(s0), float(s1), stretch,
                                      corridor_cell(line, float(s0), float(s1), left_m, right_m)))
    return intervals


def chainage_offset(line: Any, geometry: Any) -> tuple[float, float]:
    """Returns (chainage, signed offset, left positive) of a geometry's representative point on ``line``."""
    import shapely

    point = geometry if geometry.geom_type == "Point" else shapely.point_on_surface(geometry)
    s = float(line.project(point))
    foot, normal = _normal(line, s)
    return s, float(np.dot(np.array([point.x, point.y]) - foot, normal))
