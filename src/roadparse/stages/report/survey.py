"""A survey as ``roadparse export`` wrote it (a GeoPackage of per-frame layers), with overlapping ground counted once.

Drone frames overlap 60-80 %, so every layer of the export holds the same ground several
times. Each piece of ground is measured from one frame only: the frame, among those that
imaged it, whose footprint centre is nearest (the centre of a frame is its sharpest, least
tilted part). Those *cells* partition the imaged ground; a frame's polygons, centre-lines
and cones are clipped to its cell before anything is summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.ground_cells import nearest_centre_cells

GRID_M = 1e-4
"""Coordinates are snapped to 0.1 mm when pieces of neighbouring cells are joined (no slivers)."""
CONE_CLASS = "traffic_cone"
SEALING_CLASS = "crack_sealing"
MARKING_CLASSES = ("white_marking", "yellow_marking")
PAVED_CLASSES = ("road", "white_marking", "yellow_marking", "crack_sealing", "traffic_cone")
"""Classes that lie on the road surface (the area sealing density is measured against)."""


@dataclass
class Survey:
    """One survey's layers, overlap removed."""

    path: Path
    crs_wkt: str
    pixel_m: float
    """median ground size of a predicted pixel (metres)"""
    imaged: Any
    """shapely geometry: all ground with a prediction"""
    cells: dict[str, Any]
    """frame → the part of the imaged ground measured from it"""
    areas: dict[str, Any] = field(default_factory=dict)
    """class → (Multi)Polygon of that class, overlap counted once"""
    lines: dict[str, Any] = field(default_factory=dict)
    """linear class → (Multi)LineString of its centre-lines, overlap counted once"""
    cones: list[Any] = field(default_factory=list)
    """one Point per cone"""


def find_gpkg(survey: str | Path) -> Path:
    """Returns the GeoPackage of a survey: SURVEY itself, or ``SURVEY/export.gpkg``.

    Raises:
        ValueError: no GeoPackage there (the message says how to make one).
    """
    path = Path(survey)
    if path.is_dir():
        path = path / "export.gpkg"
    if not path.is_file():
        raise ValueError(f"{survey}: no export GeoPackage; run `roadparse export PRED_DIR` (writes PRED_DIR/export.gpkg) "
                         "and pass PRED_DIR or the .gpkg")
    return path


def _read_layer(path: Path, layer: str) -> tuple[list[Any], dict[str, np.ndarray], str | None]:
    import pyogrio.raw
    import shapely

    meta, _, geometry, values = pyogrio.raw.read(path, layer=layer)
    fields = {name: values[i] for i, name in enumerate(meta["fields"])}
    return list(shapely.from_wkb(geometry)), fields, meta.get("crs")


def frame_cells(footprints: dict[str, Any]) -> dict[str, Any]:
    """Returns frame → its cell: the part of its footprint nearer its centre than that of any other frame covering it
    (:func:`roadparse.ground_cells.nearest_centre_cells`, as ``roadparse export`` counts survey totals)."""
    frames = list(footprints)
    centres = np.array([(footprints[f].centroid.x, footprints[f].centroid.y) for f in frames], dtype=np.float64)
    return dict(zip(frames, nearest_centre_cells([footprints[f] for f in frames], centres), strict=True))


def _clip_to_cells(geometries: list[Any], frames: np.ndarray, cells: dict[str, Any]) -> list[Any]:
    import shapely

    clipped = shapely.intersection(np.array(geometries, dtype=object),
                                   np.array([cells[str(f)] for f in frames], dtype=object), grid_size=GRID_M)
    return [g for g in clipped if not g.is_empty]


def read_survey(survey: str | Path) -> Survey:
    """Returns the survey of an export GeoPackage, each class's ground counted once (see the module docstring).

    Raises:
        ValueError: no GeoPackage, no CRS (frames without georeference cannot be placed on a centreline),
            or no polygon layer with a ``frame`` field.
    """
    import pyogrio
    import shapely

    path = find_gpkg(survey)
    names = [str(name) for name, kind in pyogrio.list_layers(path) if kind is not None]  # not layer_styles
    polygons: dict[str, tuple[list[Any], dict[str, np.ndarray]]] = {}
    crs = None
    for name in names:
        if name.endswith("_centreline"):
            continue
        geometries, fields, layer_crs = _read_layer(path, name)
        if "frame" not in fields:
            continue
        polygons[name] = (geometries, fields)
        crs = crs or layer_crs
    if not polygons:
        raise ValueError(f"{path}: no class polygon layer with a 'frame' field; is it a `roadparse export` GeoPackage?")
    if not crs:
        raise ValueError(f"{path}: the layers have no CRS; reports along a centreline need georeferenced frames "
                         "(GeoTIFFs or drone JPEGs with GPS) in a projected CRS")
    by_frame: dict[str, list[Any]] = {}
    pixel_sizes = []
    for geometries, fields in polygons.values():
        for geometry, frame in zip(geometries, fields["frame"], strict=True):
            by_frame.setdefault(str(frame), []).append(geometry)
        if "pixels" in fields and "area_m2" in fields:
            pixel_sizes.extend(np.sqrt(fields["area_m2"].astype(float) / np.maximum(fields["pixels"].astype(float), 1)))
    footprints = {frame: shapely.union_all(parts, grid_size=GRID_M) for frame, parts in by_frame.items()}
    cells = frame_cells({frame: fp.convex_hull for frame, fp in footprints.items()})
    cells = {frame: cells[frame].intersection(footprints[frame], grid_size=GRID_M) for frame in cells}
    result = Survey(path, crs, float(np.median(pixel_sizes)) if pixel_sizes else 0.0,
                    shapely.union_all(list(cells.values()), grid_size=GRID_M), cells)
    for name, (geometries, fields) in polygons.items():
        if name == CONE_CLASS:
            points = shapely.point_on_surface(np.array(geometries, dtype=object))
            result.cones = [p for p, frame in zip(points, fields["frame"], strict=True) if cells[str(frame)].contains(p)]
        result.areas[name] = shapely.union_all(_clip_to_cells(geometries, fields["frame"], cells), grid_size=GRID_M)
    for name in names:
        if name.endswith("_centreline"):
            geometries, fields, _ = _read_layer(path, name)
            pieces = _clip_to_cells(geometries, fields["frame"], cells)
            result.lines[name.removesuffix("_centreline")] = shapely.line_merge(shapely.union_all(pieces))
    return result
