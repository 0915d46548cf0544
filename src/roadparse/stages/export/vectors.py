"""Label maps → GIS layers: one polygon layer per class, centre-lines for thin linear classes.

Each 4-connected region of a class in a frame mosaic (:mod:`roadparse.stages.export.rasters`)
is one feature: its exact pixel-edge polygon (rasterio), simplified with shapely at a
tolerance in cm; area and confidence come from the pixels. Thin linear classes (crack
sealing, lane markings) also get a centre-line feature per region: the scikit-image
skeleton joined into polylines by shapely, with its length and the mean width
(area / length). Layers are written with pyogrio (GeoPackage, GeoJSON, Shapefile).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from roadparse.io.labels import ClassSet
from roadparse.stages.export.rasters import FrameRaster

log = logging.getLogger(__name__)

LINEAR_CLASSES = ("crack_sealing", "white_marking", "yellow_marking")
"""Classes that also get centre-lines (names not among the classes are ignored)."""
Format = Literal["gpkg", "geojson", "shp"]
DRIVERS = {"gpkg": "GPKG", "geojson": "GeoJSON", "shp": "ESRI Shapefile"}


@dataclass
class Layer:
    """Features of one layer: geometries and one list per attribute."""

    name: str
    geometries: list[Any] = field(default_factory=list)
    attributes: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, geometry: Any, **values: Any) -> None:
        """Appends one feature."""
        self.geometries.append(geometry)
        for key, value in values.items():
            self.attributes.setdefault(key, []).append(value)


def skeleton_lines(skeleton: np.ndarray) -> list[Any]:
    """Returns the polylines (shapely LineStrings, pixel-centre coordinates (col + 0.5, row + 0.5))
    through an (h, w) bool one-pixel-wide skeleton.

    Neighbouring skeleton pixels are joined (8-connectivity, but a diagonal step is left out
    where an L-shaped path through a shared neighbour exists, so corners make no triangles)
    and the segments are merged into maximal polylines with ``shapely.line_merge``.
    """
    import shapely

    skel = np.pad(skeleton.astype(bool), 1)
    segments = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        here = skel[1:-1, 1:-1]
        there = skel[1 + dr : skel.shape[0] - 1 + dr, 1 + dc : skel.shape[1] - 1 + dc]
        joined = here & there
        if dr and dc:  # diagonal: only where no orthogonal neighbour links the two pixels
            corner_a = skel[1:-1, 1 + dc : skel.shape[1] - 1 + dc]
            corner_b = skel[2:, 1:-1]
            joined &= ~(corner_a | corner_b)
        rows, cols = np.nonzero(joined)
        start = np.stack([cols + 0.5, rows + 0.5], axis=1)
        segments.append(np.stack([start, start + [dc, dr]], axis=1))
    pairs = np.concatenate(segments)
    if len(pairs) == 0:
        return []
    merged = shapely.line_merge(shapely.MultiLineString(list(pairs)))
    return list(merged.geoms) if hasattr(merged, "geoms") else [merged]


def _affine(transform: tuple[float, ...], offset: tuple[int, int] = (0, 0)) -> list[float]:
    """Returns shapely's affine [a, b, d, e, xoff, yoff] of a pixel transform shifted by (col, row) ``offset``."""
    a, b, c, d, e, f = transform
    return [a, b, d, e, a * offset[0] + b * offset[1] + c, d * offset[0] + e * offset[1] + f]


def _component_polygons(raster: FrameRaster, components: np.ndarray) -> dict[int, Any]:
    """Returns component id → shapely polygon (exact pixel edges, in the raster's coordinates)."""
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import Affine

    polygons = {}
    for geojson, value in shapes(components, mask=components > 0, connectivity=4, transform=Affine(*raster.transform)):
        polygons[int(value)] = shapely.geometry.shape(geojson)
    return polygons


def _centre_line(mask: np.ndarray, raster: FrameRaster, offset: tuple[int, int], tolerance: float) -> Any | None:
    """Returns the simplified centre-line (LineString or MultiLineString) of one region's (h, w) bool mask."""
    import shapely
    from skimage.morphology import skeletonize

    lines = skeleton_lines(skeletonize(mask))
    if not lines:
        return None
    geometry = lines[0] if len(lines) == 1 else shapely.MultiLineString(lines)
    geometry = shapely.affinity.affine_transform(geometry, _affine(raster.transform, offset))
    return shapely.simplify(geometry, tolerance)


def frame_layers(
    raster: FrameRaster,
    classes: ClassSet,
    *,
    simplify_cm: float = 1.0,
    min_area_m2: float = 0.001,
    linear_classes: tuple[str, ...] = LINEAR_CLASSES,
    run: dict[str, str] | None = None,
) -> dict[str, Layer]:
    """Returns the layers of one frame: ``<class>`` polygons and ``<class>_centreline`` lines.

    Args:
        raster: the frame's labels on the ground (coordinates in metres).
        classes: class names by id.
        simplify_cm: polygon / line simplification tolerance in cm (Douglas-Peucker, topology kept).
        min_area_m2: regions smaller than this are left out (prediction specks).
        linear_classes: classes that also get centre-lines.
        run: ``model`` and ``run`` ids written on every feature.
    """
    import shapely
    from scipy import ndimage

    tolerance = simplify_cm / 100.0
    pixel_m2 = raster.pixel_area_m2
    ids = {"model": (run or {}).get("model", ""), "run": (run or {}).get("run", "")}
    layers: dict[str, Layer] = {}
    for class_id, name in enumerate(classes.names):
        components, count = ndimage.label(raster.labels == class_id)  # 4-connectivity, as the polygons
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        pixels = np.bincount(components.ravel(), minlength=count + 1)[1:]
        confidence = (ndimage.mean(raster.confidence, components, index) / 255.0
                      if raster.confidence is not None else np.full(count, np.nan))
        keep = pixels * pixel_m2 >= min_area_m2
        if not keep.any():
            continue
        components[~np.concatenate([[False], keep])[components]] = 0
        polygons = _component_polygons(raster, components.astype(np.int32))
        slices = ndimage.find_objects(components)
        for component in np.flatnonzero(keep) + 1:
            box = slices[component - 1]
            tiles = ",".join(raster.tiles_in((box[1].start, box[0].start, box[1].stop, box[0].stop)))
            area = float(pixels[component - 1] * pixel_m2)
            conf = None if np.isnan(confidence[component - 1]) else round(float(confidence[component - 1]), 4)
            common = {"class": name, "frame": raster.frame, "tile": tiles, **ids, "confidence": conf}
            polygon = shapely.simplify(polygons[int(component)], tolerance, preserve_topology=True)
            layers.setdefault(name, Layer(name)).add(polygon, **common, area_m2=round(area, 5),
                                                     pixels=int(pixels[component - 1]))
            if name in linear_classes:
                mask = components[box] == component
                line = _centre_line(mask, raster, (box[1].start, box[0].start), tolerance)
                if line is not None and line.length > 0:
                    layers.setdefault(f"{name}_centreline", Layer(f"{name}_centreline")).add(
                        line, **common, length_m=round(line.length, 4), width_cm=round(100.0 * area / line.length, 3))
    return layers


def merge_layers(per_frame: list[dict[str, Layer]]) -> dict[str, Layer]:
    """Returns the layers of several frames concatenated by layer name."""
    merged: dict[str, Layer] = {}
    for layers in per_frame:
        for name, layer in layers.items():
            target = merged.setdefault(name, Layer(name))
            target.geometries.extend(layer.geometries)
            for key, values in layer.attributes.items():
                target.attributes.setdefault(key, []).extend(values)
    return merged


def _geometry_type(geometries: list[Any]) -> str:
    kinds = {g.geom_type for g in geometries}
    if kinds <= {"Polygon"} or kinds <= {"LineString"}:
        return kinds.pop()
    return "MultiPolygon" if "Polygon" in kinds or "MultiPolygon" in kinds else "MultiLineString"


def _write_layer(path: Path, layer: Layer, driver: str, crs_wkt: str | None) -> None:
    import pyogrio.raw
    import shapely

    geometry_type = _geometry_type(layer.geometries)
    geometries = layer.geometries
    if geometry_type.startswith("Multi"):
        make = shapely.MultiPolygon if geometry_type == "MultiPolygon" else shapely.MultiLineString
        geometries = [g if g.geom_type.startswith("Multi") else make([g]) for g in geometries]
    fields = list(layer.attributes)
    data = [np.array([np.nan if v is None else v for v in layer.attributes[key]]) if key == "confidence"
            else np.asarray(layer.attributes[key]) for key in fields]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")  # local metres: no CRS, on purpose
        pyogrio.raw.write(path, shapely.to_wkb(np.array(geometries, dtype=object)), data, fields, layer=layer.name,
                          driver=driver, geometry_type=geometry_type, crs=crs_wkt,
                          append=path.exists() and driver == "GPKG")


def write_layers(out: str | Path, layers: dict[str, Layer], fmt: Format, crs_wkt: str | None) -> list[Path]:
    """Writes the layers and returns the files written (atomically: all appear together or none).

    GeoPackage: one file ``out`` with a layer each; GeoJSON and Shapefile hold one layer per
    file, so ``out`` is a folder of ``<layer>.geojson`` / ``<layer>.shp``. ``crs_wkt`` None
    writes no CRS (local metric coordinates).
    """
    out = Path(out)
    if not layers:
        raise ValueError(f"{out}: no features to write (no labelled regions above the minimum area)")
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        target = staging / out.name
        if fmt == "gpkg":
            for layer in layers.values():
                _write_layer(target, layer, DRIVERS[fmt], crs_wkt)
        else:
            target.mkdir()
            for name, layer in layers.items():
                _write_layer(target / f"{name}.{fmt}", layer, DRIVERS[fmt], crs_wkt)
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(target, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out.iterdir()) if out.is_dir() else [out]
