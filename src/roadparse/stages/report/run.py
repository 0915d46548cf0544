"""``roadparse report``: an exported survey along a centreline → interval layer, marking layer, CSV, HTML."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadparse.stages.report.chainage import Direction, Interval, cut_intervals, read_centrelines
from roadparse.stages.report.intervals import Aggregate, interval_row, marking_rows
from roadparse.stages.report.markings import Marking, find_markings
from roadparse.stages.report.outputs import (
    html_page,
    qml_style,
    store_style,
    strip_chart,
    write_csv,
    write_layer,
)
from roadparse.stages.report.survey import MARKING_CLASSES, Survey, read_survey

log = logging.getLogger(__name__)

INTERVAL_PANELS = [
    ("imaged coverage of the corridor", [("valid_share", "valid")], "share"),
    ("marking wear", [("white_marking_wear", "white"), ("yellow_marking_wear", "yellow")], "share"),
    ("marking length", [("white_marking_solid_m", "white solid"), ("white_marking_dashed_m", "white dashed"),
                        ("yellow_marking_solid_m", "yellow solid")], "m"),
    ("crack sealing density", [("crack_sealing_m_per_100m2", "sealing")], "m / 100 m²"),
    ("traffic cones", [("traffic_cone_count", "cones")], "count"),
]


@dataclass
class Analysis:
    """One survey measured along its centrelines."""

    survey: Survey
    intervals: list[Interval]
    markings: dict[str, list[Marking]]
    rows: list[dict[str, Any]]
    marking_rows: list[dict[str, Any]]


def analyse(survey_path: str | Path, centreline: str | Path, interval_m: float = 10.0, corridor_m: float = 10.0,
            direction: Direction = "forward", aggregate: Aggregate = "mean") -> Analysis:
    """Returns the interval and marking records of one survey (see the package modules for each figure)."""
    survey = read_survey(survey_path)
    roads = read_centrelines(centreline, survey.crs_wkt)
    intervals = [interval for road in roads for interval in cut_intervals(road, interval_m, corridor_m, direction)]
    lines = [road.line for road in roads]
    markings = {name: find_markings(survey.areas.get(name), name, survey.pixel_m, lines) for name in MARKING_CLASSES}
    rows = []
    for interval in intervals:
        row = interval_row(interval, intervals, survey, markings, aggregate)
        rows.append({**row, "geometry": interval.line})
    per_marking = [row for name in MARKING_CLASSES for row in marking_rows(intervals, markings[name])]
    per_marking.sort(key=lambda r: (r["road_id"], r["direction"], r["chainage_m"], r["class"]))
    return Analysis(survey, intervals, markings, rows, per_marking)


def write_outputs(out_dir: Path, crs_wkt: str, layers: dict[str, tuple[list[dict[str, Any]], str | None]],
                  page: str, chart: bytes, csv_rows: dict[str, list[dict[str, Any]]], name: str = "report") -> list[Path]:
    """Writes ``<name>.gpkg`` (its layers, each styled on its field), ``<layer>.qml``, the CSVs, ``report.html`` and
    ``strips.png`` into ``out_dir``, all at once (a staging folder replaced into place); returns the files."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        gpkg = staging / f"{name}.gpkg"
        for layer, (rows, style_field) in layers.items():
            write_layer(gpkg, layer, rows, crs_wkt)
            if style_field and rows:
                qml = qml_style(style_field, "line" if rows[0]["geometry"].geom_type == "LineString" else "fill")
                (staging / f"{layer}.qml").write_text(qml)
                store_style(gpkg, layer, qml)
        for table, rows in csv_rows.items():
            write_csv(staging / f"{table}.csv", rows)
        (staging / f"{name}.html").write_text(page)
        (staging / "strips.png").write_bytes(chart)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out_dir.iterdir())


def make_report(survey_path: str | Path, centreline: str | Path, out_dir: str | Path, *, interval_m: float = 10.0,
                corridor_m: float = 10.0, direction: Direction = "forward", aggregate: Aggregate = "mean") -> dict[str, Any]:
    """Measures a survey along its centrelines and writes the report folder; returns the intervals and files.

    Raises:
        ValueError: no export GeoPackage, no CRS, or an unreadable centreline.
    """
    analysis = analyse(survey_path, centreline, interval_m, corridor_m, direction, aggregate)
    rows = analysis.rows
    cells = [{**{k: v for k, v in row.items() if k != "geometry"}, "geometry": interval.cell}
             for row, interval in zip(rows, analysis.intervals, strict=True)]
    chart = strip_chart(rows, INTERVAL_PANELS, f"{Path(survey_path).name}: {interval_m:g} m intervals ({aggregate} wear)")
    note = (f"Survey {analysis.survey.path}; centreline {centreline}; corridor {corridor_m:g} m wide; wear = unpainted "
            f"share of each marking's envelope ({aggregate} per interval); ground seen by several frames counted once.")
    page = html_page("roadparse report", note, [("strip charts along chainage", chart)], rows)
    files = write_outputs(Path(out_dir), analysis.survey.crs_wkt,
                          {"intervals": (rows, "white_marking_wear"), "interval_cells": (cells, "white_marking_wear"),
                           "markings": (analysis.marking_rows, "wear")},
                          page, chart, {"intervals": rows, "markings": analysis.marking_rows})
    log.info("%d interval(s), %d marking(s) → %s", len(rows), len(analysis.marking_rows), out_dir)
    return {"intervals": [{k: v for k, v in row.items() if k != "geometry"} for row in rows],
            "markings": [{k: v for k, v in row.items() if k != "geometry"} for row in analysis.marking_rows],
            "files": [str(f) for f in files]}
