"""Label maps → GIS layers: one polygon layer per class, centre-lines for thin linear classes.

Each 4-connected region of a class in a frame mosaic (:mod:`roadparse.stages.export.rasters`)
is one feature: its exact pixel-edge polygon (rasterio), simplified with shapely at a
tolerance in cm; area and confidence come from the pixels. Thin linear classes (crack
sealing, lane markings) also get a centre-line feature per region
(:func:`roadparse.centrelines.centre_line_paths`: the skeleton without spurs, smoothed and
run out to the region's ends; one line end to end, except for :data:`BRANCHING_CLASSES`,
whose forks are kept), with its length and the mean width (area / length).
:mod:`roadparse.stages.export.gis` writes the layers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadparse.io.labels import ClassSet
from roadparse.stages.export.rasters import FrameRaster

log = logging.getLogger(__name__)

LINEAR_CLASSES = ("crack_sealing", "white_marking", "yellow_marking")
"""Classes that also get centre-lines (names not among the classes are ignored)."""
BRANCHING_CLASSES = ("crack_sealing",)
"""Linear classes whose regions may fork (sealing follows cracks); a region of any other is one line end to end."""


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


def _centre_line(mask: np.ndarray, raster: FrameRaster, offset: tuple[int, int], tolerance: float,
                 branching: bool) -> Any | None:
    """Returns the simplified centre-line (LineString or MultiLineString) of one region's (h, w) bool mask."""
    import shapely

    from roadparse.centrelines import centre_line_paths

    paths = [path for path in centre_line_paths(mask, branching=branching) if len(path) >= 2]
    if not paths:
        return None
    merged = shapely.line_merge(shapely.MultiLineString(paths))
    geometry = shapely.affinity.affine_transform(merged, _affine(raster.transform, offset))
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
                line = _centre_line(mask, raster, (box[1].start, box[0].start), tolerance, name in BRANCHING_CLASSES)
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
