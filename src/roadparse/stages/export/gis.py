"""Writing layers with the CRS a GIS needs to put them in the right place, and a QGIS style per layer.

- **Georeferenced frames** (GeoTIFF, drone JPEGs placed by EXIF): GeoPackage and Shapefile
  keep the frames' CRS (metres); GeoJSON is reprojected to WGS84 longitude/latitude with
  pyproj and written as RFC 7946 asks (GDAL's ``RFC7946=YES``: no ``crs`` member, 7 decimals, about 1 cm).
- **Frames without georeference** are in metres from the frame's top-left corner. GeoPackage
  and Shapefile carry that as an explicit engineering CRS (:data:`LOCAL_CRS_WKT`: GDAL writes
  it as ``LOCAL_CS``), so GIS software shows metres on no map instead of guessing. GeoJSON is
  refused (:class:`UnreferencedGeoJSONError`): RFC 7946 knows only WGS84, and GDAL reads a
  GeoJSON of any other CRS, an engineering one included, as EPSG:4326 degrees near 0° N 0° E.
- **Styles**: each layer gets its class colour from the classes' palette
  (:mod:`roadparse.stages.export.styles`): a ``<layer>.qml`` beside each GeoJSON / Shapefile
  (QGIS loads it with the layer), and the same QML in the GeoPackage's ``layer_styles`` table,
  QGIS's default style of a GeoPackage layer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from roadparse.io.labels import ClassSet
from roadparse.stages.export.styles import layer_style_qml, write_gpkg_styles
from roadparse.stages.export.vectors import Layer

Format = Literal["gpkg", "geojson", "shp"]
DRIVERS = {"gpkg": "GPKG", "geojson": "GeoJSON", "shp": "ESRI Shapefile"}
LOCAL_CRS_WKT = (
    'ENGCRS["roadparse frame: metres from the frame\'s top-left corner, not placed on the Earth",'
    'EDATUM["top-left corner of the frame"],CS[Cartesian,2],'
    'AXIS["x (right)",east,ORDER[1],LENGTHUNIT["metre",1]],AXIS["y (up)",north,ORDER[2],LENGTHUNIT["metre",1]]]'
)
"""The engineering CRS of frames without georeference (x to the right, y up, metres)."""


class UnreferencedGeoJSONError(ValueError):
    """GeoJSON asked for frames that are not placed on the Earth; the message names the fix."""


def check_format(fmt: Format, crs_wkt: str | None, source: str | Path) -> None:
    """Raises :class:`UnreferencedGeoJSONError` for GeoJSON of frames without a CRS (see the module docstring)."""
    if fmt == "geojson" and crs_wkt is None:
        raise UnreferencedGeoJSONError(
            f"{source}: the frames have no georeference (no CRS: their coordinates are metres from each frame's "
            "top-left corner). GeoJSON (RFC 7946) is always WGS84 longitude/latitude, so GDAL and QGIS would read "
            "these metres as degrees near 0° N 0° E. Export with --format gpkg (or shp), which carry a local "
            "metric CRS, or georeference the frames first (GeoTIFFs, or drone JPEGs with GPS in their EXIF)")


def to_wgs84(geometries: list[Any], crs_wkt: str) -> list[Any]:
    """Returns the geometries reprojected from ``crs_wkt`` to WGS84 (x = longitude, y = latitude)."""
    import shapely
    from pyproj import CRS, Transformer

    transformer = Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(coords[:, 0], coords[:, 1])
        return np.stack([lon, lat], axis=1)

    return list(shapely.transform(np.array(geometries, dtype=object), project))


def _geometry_type(geometries: list[Any]) -> str:
    kinds = {g.geom_type for g in geometries}
    if kinds <= {"Polygon"} or kinds <= {"LineString"}:
        return kinds.pop()
    return "MultiPolygon" if "Polygon" in kinds or "MultiPolygon" in kinds else "MultiLineString"


def _write_layer(path: Path, layer: Layer, fmt: Format, crs_wkt: str | None) -> None:
    """Writes one layer: in ``crs_wkt`` (GeoJSON: reprojected to WGS84), or in :data:`LOCAL_CRS_WKT` when None."""
    import pyogrio.raw
    import shapely

    geometry_type = _geometry_type(layer.geometries)
    geometries = layer.geometries
    if geometry_type.startswith("Multi"):
        make = shapely.MultiPolygon if geometry_type == "MultiPolygon" else shapely.MultiLineString
        geometries = [g if g.geom_type.startswith("Multi") else make([g]) for g in geometries]
    options: dict[str, Any] = {}
    crs = crs_wkt or LOCAL_CRS_WKT
    if fmt == "geojson":
        if crs_wkt is None:
            raise UnreferencedGeoJSONError(f"{path}: GeoJSON needs georeferenced frames (see check_format)")
        geometries, crs = to_wgs84(geometries, crs_wkt), "EPSG:4326"
        options["RFC7946"] = "YES"
    fields = list(layer.attributes)
    data = [np.array([np.nan if v is None else v for v in layer.attributes[key]]) if key == "confidence"
            else np.asarray(layer.attributes[key]) for key in fields]
    pyogrio.raw.write(path, shapely.to_wkb(np.array(geometries, dtype=object)), data, fields, layer=layer.name,
                      driver=DRIVERS[fmt], geometry_type=geometry_type, crs=crs,
                      append=path.exists() and fmt == "gpkg", layer_options=options or None)


def _styles(layers: dict[str, Layer], classes: ClassSet) -> dict[str, str]:
    """Returns layer name → QML of the layers whose class is in ``classes``."""
    styles = {}
    for name, layer in layers.items():
        class_name = name.removesuffix("_centreline")
        if class_name in classes.names:
            colour = classes.colors[classes.names.index(class_name)]
            line = "LineString" in _geometry_type(layer.geometries)
            styles[name] = layer_style_qml(class_name, tuple(colour), "line" if line else "fill")
    return styles


def write_layers(out: str | Path, layers: dict[str, Layer], fmt: Format, crs_wkt: str | None,
                 classes: ClassSet | None = None) -> list[Path]:
    """Writes the layers (and, given ``classes``, their QGIS styles); returns the files written.

    All files appear together or none (written in a staging folder, then moved). GeoPackage:
    one file ``out`` with a layer each; GeoJSON and Shapefile hold one layer per file, so
    ``out`` is a folder of ``<layer>.geojson`` / ``<layer>.shp`` (and ``<layer>.qml``).
    ``crs_wkt`` None: frames without georeference (see the module docstring).

    Raises:
        ValueError: no layer to write; :class:`UnreferencedGeoJSONError` for GeoJSON without a CRS.
    """
    out = Path(out)
    if not layers:
        raise ValueError(f"{out}: no features to write (no labelled regions above the minimum area)")
    check_format(fmt, crs_wkt, out)
    styles = _styles(layers, classes) if classes is not None else {}
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        target = staging / out.name
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Normalized/laundered field name.*")
            if fmt == "gpkg":
                for layer in layers.values():
                    _write_layer(target, layer, fmt, crs_wkt)
                write_gpkg_styles(target, styles)
            else:
                target.mkdir()
                for name, layer in layers.items():
                    _write_layer(target / f"{name}.{fmt}", layer, fmt, crs_wkt)
                    if name in styles:
                        (target / f"{name}.qml").write_text(styles[name], encoding="utf-8")
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(target, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out.iterdir()) if out.is_dir() else [out]
