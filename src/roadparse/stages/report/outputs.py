"""Report files: a GeoPackage (interval lines, corridor cells, markings) with QGIS styles, a CSV, an HTML page.

The styles are written twice: as ``<layer>.qml`` beside the GeoPackage (QGIS: Layer
Properties → Symbology → Style → Load Style) and into the GeoPackage's ``layer_styles``
table, which QGIS applies by itself when the layer is added.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.workspace import atomic_write_text

WEAR_BREAKS = ((0.0, 0.1, "26,150,65"), (0.1, 0.25, "166,217,106"), (0.25, 0.5, "253,174,97"), (0.5, 1.01, "215,25,28"))
"""Wear classes of the styles: green below 10 %, red from 50 %."""


def write_layer(path: Path, name: str, rows: list[dict[str, Any]], crs_wkt: str) -> None:
    """Appends layer ``name`` (each row's ``geometry`` and its other keys as fields) to the GeoPackage ``path``."""
    import pyogrio.raw
    import shapely

    if not rows:
        return
    geometries = [row["geometry"] for row in rows]
    kinds = {g.geom_type for g in geometries}
    if kinds <= {"LineString"}:
        geometry_type = "LineString"
    else:
        geometry_type = "MultiPolygon"
        geometries = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geometries]
    fields = [key for key in rows[0] if key != "geometry"]
    values = [np.array([row[key] for row in rows]) for key in fields]
    pyogrio.raw.write(path, shapely.to_wkb(np.array(geometries, dtype=object)), values, fields, layer=name,
                      driver="GPKG", geometry_type=geometry_type, crs=crs_wkt, append=path.exists())


def qml_style(field: str, geometry: str) -> str:
    """Returns a QGIS style (QML) colouring a layer by ``field`` in :data:`WEAR_BREAKS` classes (line or fill symbols)."""
    ranges, symbols = [], []
    for k, (low, high, colour) in enumerate(WEAR_BREAKS):
        label = f"{low:.0%} – {min(high, 1.0):.0%}"
        ranges.append(f'<range lower="{low}" upper="{high}" symbol="{k}" label="{html.escape(label)}" render="true"/>')
        if geometry == "line":
            layer = (f'<layer class="SimpleLine" enabled="1" pass="0" locked="0"><Option type="Map">'
                     f'<Option type="QString" name="line_color" value="{colour},255"/>'
                     f'<Option type="QString" name="line_width" value="2"/>'
                     f'<Option type="QString" name="line_width_unit" value="MM"/></Option></layer>')
        else:
            layer = (f'<layer class="SimpleFill" enabled="1" pass="0" locked="0"><Option type="Map">'
                     f'<Option type="QString" name="color" value="{colour},160"/>'
                     f'<Option type="QString" name="outline_color" value="{colour},255"/></Option></layer>')
        symbols.append(f'<symbol type="{"line" if geometry == "line" else "fill"}" name="{k}" alpha="1" '
                       f'clip_to_extent="1" force_rhr="0">{layer}</symbol>')
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            f'<qgis version="3.28.0" styleCategories="Symbology">\n'
            f'<renderer-v2 type="graduatedSymbol" attr="{html.escape(field)}" graduatedMethod="GraduatedColor" '
            f'symbollevels="0" enableorderby="0" forceraster="0">\n<ranges>{"".join(ranges)}</ranges>\n'
            f'<symbols>{"".join(symbols)}</symbols>\n</renderer-v2>\n</qgis>\n')


def store_style(path: Path, layer: str, qml: str) -> None:
    """Writes ``qml`` as the default style of ``layer`` into the GeoPackage's ``layer_styles`` table (QGIS's own)."""
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT,
            f_table_schema TEXT, f_table_name TEXT, f_geometry_column TEXT, styleName TEXT, styleQML TEXT, styleSLD TEXT,
            useAsDefault BOOLEAN, description TEXT, owner TEXT, ui TEXT, update_time DATETIME DEFAULT CURRENT_TIMESTAMP)""")
        db.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
                   "styleQML, styleSLD, useAsDefault, description, owner) VALUES ('', '', ?, 'geom', ?, ?, '', 1, "
                   "'roadparse report', '')", (layer, layer, qml))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Writes rows (without geometry) as CSV, atomically."""
    fields = list(dict.fromkeys(key for row in rows for key in row if key != "geometry"))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, table.getvalue())


def strip_chart(rows: list[dict[str, Any]], panels: list[tuple[str, list[tuple[str, str]], str]], title: str) -> bytes:
    """Returns a PNG of strip charts along chainage: one panel per (title, [(field, label)], unit), a step per interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9.0, 1.6 * len(panels) + 0.6), dpi=100, sharex=True, squeeze=False)
    edges = [row["from_m"] for row in rows] + [rows[-1]["to_m"]] if rows else [0.0, 1.0]
    for ax, (panel, fields, unit) in zip(axes[:, 0], panels, strict=True):
        for field, label in fields:
            values = [row.get(field, float("nan")) for row in rows]
            values = [float("nan") if v is None else float(v) for v in values]
            ax.stairs(values, edges, label=label, linewidth=1.6, baseline=None)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(panel, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(fields) > 1:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("chainage (m)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def html_page(title: str, note: str, charts: list[tuple[str, bytes]], rows: list[dict[str, Any]]) -> str:
    """Returns a self-contained HTML page: a note, the charts (embedded PNGs) and a table of the rows."""
    fields = list(dict.fromkeys(key for row in rows for key in row if key != "geometry"))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:g}"
        return html.escape(str(value))

    images = "".join(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>" for name, png in charts)
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(f, ''))}</td>" for f in fields) + "</tr>" for row in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif}}table{{border-collapse:collapse;"
            "font-size:12px}td,th{border:1px solid #ccc;padding:2px 5px}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>{images}<h2>Intervals</h2>"
            f"<table><tr>{head}</tr>{body}</table></body></html>")
