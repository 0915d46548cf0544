"""QGIS styles (QML) in the class colours, as files and in a GeoPackage's ``layer_styles`` table.

A polygon layer is filled with its class colour (70 % opaque) and outlined in a dark grey,
so white markings show on light ground; a centre-line is drawn in its class colour over a
dark casing. The QML carries each symbol layer's properties both as ``<Option>`` maps (QGIS
3.26 and later) and as ``<prop>`` elements (earlier 3.x).

QGIS loads ``<layer>.qml`` beside a GeoJSON or Shapefile with the layer, and a GeoPackage
layer's default style from the ``layer_styles`` table (the table QGIS itself writes when a
style is saved "in the database"): one row per layer with ``f_table_name`` = the layer,
``f_geometry_column`` = ``geom``, ``useAsDefault`` = true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

GEOMETRY_COLUMN = "geom"
"""GDAL's geometry column of GeoPackage layers."""
OUTLINE = (35, 35, 35)
FILL_OPACITY = 0.7
_GEOMETRY_TYPES = {"fill": 2, "line": 1}


def _symbol_layer(kind: str, props: dict[str, str]) -> str:
    """Returns one ``<layer>`` element of a symbol with its properties in both QML forms."""
    options = "".join(f'<Option type="QString" name={quoteattr(k)} value={quoteattr(v)}/>' for k, v in props.items())
    legacy = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in props.items())
    return f'<layer class="{kind}" enabled="1" locked="0" pass="0"><Option type="Map">{options}</Option>{legacy}</layer>'


def _rgba(colour: tuple[int, ...], alpha: int = 255) -> str:
    return ",".join(str(int(c)) for c in (*colour[:3], alpha))


def layer_style_qml(class_name: str, colour: tuple[int, ...], kind: Literal["fill", "line"]) -> str:
    """Returns the QML of a single-symbol style in an (r, g, b) class colour for a polygon (``fill``) or line layer."""
    if kind == "fill":
        layers = _symbol_layer("SimpleFill", {
            "color": _rgba(colour, round(255 * FILL_OPACITY)), "style": "solid", "outline_color": _rgba(OUTLINE),
            "outline_style": "solid", "outline_width": "0.26", "outline_width_unit": "MM", "joinstyle": "miter"})
    else:
        line = {"line_style": "solid", "line_width_unit": "MM", "capstyle": "round", "joinstyle": "round"}
        layers = (_symbol_layer("SimpleLine", {**line, "line_color": _rgba(OUTLINE), "line_width": "0.9"})
                  + _symbol_layer("SimpleLine", {**line, "line_color": _rgba(colour), "line_width": "0.5"}))
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        '  <renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">\n'
        f'    <symbols><symbol type="{kind}" name="0" alpha="1" clip_to_extent="1" force_rhr="0">{layers}</symbol></symbols>\n'
        "    <rotation/><sizescale/>\n"
        "  </renderer-v2>\n"
        f"  <layerGeometryType>{_GEOMETRY_TYPES[kind]}</layerGeometryType>\n"
        f"  <!-- roadparse class {class_name} -->\n"
        "</qgis>\n"
    )


def write_gpkg_styles(path: str | Path, styles: dict[str, str]) -> None:
    """Writes ``layer_styles`` into a GeoPackage: one default style row per layer name → QML.

    Written with GDAL (pyogrio) as an attributes table, so the GeoPackage stays valid.
    """
    import datetime

    import numpy as np
    import pyogrio.raw

    if not styles:
        return
    names = list(styles)
    now = np.array([np.datetime64(datetime.datetime.now(datetime.UTC).replace(tzinfo=None), "ms")] * len(names))
    columns = {
        "f_table_catalog": np.array([""] * len(names), dtype=object),
        "f_table_schema": np.array([""] * len(names), dtype=object),
        "f_table_name": np.array(names, dtype=object),
        "f_geometry_column": np.array([GEOMETRY_COLUMN] * len(names), dtype=object),
        "styleName": np.array(names, dtype=object),
        "styleQML": np.array([styles[n] for n in names], dtype=object),
        "styleSLD": np.array([""] * len(names), dtype=object),
        "useAsDefault": np.ones(len(names), dtype=bool),
        "description": np.array([f"roadparse class colours: {n}" for n in names], dtype=object),
        "owner": np.array([""] * len(names), dtype=object),
        "ui": np.array([""] * len(names), dtype=object),
        "update_time": now,
    }
    pyogrio.raw.write(Path(path), None, list(columns.values()), list(columns), layer="layer_styles", driver="GPKG",
                      geometry_type=None, append=True)
