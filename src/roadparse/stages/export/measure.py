"""Measurements road engineers ask for, per frame and per survey: m² per class, metres of crack
sealing, number of traffic cones, metres of lane marking per type.

Areas come from pixel counts; lengths from the exported centre-lines; a cone is one
exported region of the cone class. Survey figures of georeferenced frames count the ground
once (:mod:`roadparse.stages.export.survey`); without georeference they are sums over
frames, and frames that overlap on the ground count the overlap twice: the files say which
(:data:`SUMMED`, or the note :func:`ground_once_note` returns).
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.io.labels import ClassSet
from roadparse.stages.export.rasters import FrameRaster
from roadparse.stages.export.vectors import Layer
from roadparse.workspace import atomic_write_json, atomic_write_text

SEALING_CLASS = "crack_sealing"
CONE_CLASS = "traffic_cone"
SUMMED = ("sum over frames: the frames have no georeference, so ground that frames share (drone surveys overlap "
          "60-80 %) is counted once per frame; export georeferenced frames, or an orthomosaic, to count it once")
"""What the survey figures are when they are plain sums over frames."""


def ground_once_note(crs_name: str) -> str:
    """Returns what the survey figures are when frames in the CRS ``crs_name`` were shared out (ground counted once)."""
    return (f"ground counted once: each frame measures only the ground nearest its centre in {crs_name} "
            "(overlaps of frames are not added twice); cones seen in several frames are counted once")


def frame_measurements(raster: FrameRaster, layers: dict[str, Layer], classes: ClassSet) -> dict[str, float | int]:
    """Returns one frame's measurements: ``area_m2.<class>``, ``<linear class>_m`` and ``<count class>_count``.

    Args:
        raster: the frame's labels (pixel area from its transform).
        layers: the frame's exported layers (:func:`roadparse.stages.export.vectors.frame_layers`).
        classes: class names by id.
    """
    counts = np.bincount(raster.labels.ravel(), minlength=256)
    result: dict[str, float | int] = {
        f"area_m2.{name}": round(float(counts[i]) * raster.pixel_area_m2, 4) for i, name in enumerate(classes.names)
    }
    for name, layer in sorted(layers.items()):
        if name.endswith("_centreline"):
            result[f"{name.removesuffix('_centreline')}_m"] = round(float(sum(layer.attributes["length_m"])), 3)
    if CONE_CLASS in classes.names:
        result[f"{CONE_CLASS}_count"] = len(layers[CONE_CLASS].geometries) if CONE_CLASS in layers else 0
    return result


def survey_measurements(frames: dict[str, dict[str, float | int]]) -> dict[str, float | int]:
    """Returns the sums over frames of every measurement (keys of all frames): overlaps count once per frame."""
    keys = list(dict.fromkeys(key for values in frames.values() for key in values))
    return {key: round(sum(values.get(key, 0) for values in frames.values()), 4) for key in keys}


def write_measurements(out_dir: str | Path, frames: dict[str, dict[str, float | int]],
                       survey: dict[str, float | int] | None = None, note: str = SUMMED) -> list[Path]:
    """Writes ``measurements.json`` (frames, survey and what the survey figures are), ``measurements_frames.csv``
    (a row per frame), ``measurements_survey.csv`` (one row; its ``totals`` column says how the figures were
    made) and ``measurements.html``; returns their paths.

    Args:
        out_dir: folder to write to.
        frames: frame → its measurements.
        survey: the survey figures (default: the sums over frames).
        note: what the survey figures are (:data:`SUMMED`, or :func:`ground_once_note`).
    """
    out_dir = Path(out_dir)
    survey = survey if survey is not None else survey_measurements(frames)
    keys = list(dict.fromkeys([*survey, *(key for values in frames.values() for key in values)]))
    paths = [out_dir / name for name in ("measurements.json", "measurements_frames.csv", "measurements_survey.csv",
                                         "measurements.html")]
    atomic_write_json(paths[0], {"frames": frames, "survey": survey, "survey_totals": note})
    tables: tuple[tuple[Path, list[dict[str, Any]], list[str]], ...] = ((paths[1], [{"frame": f, **v} for f, v in frames.items()], []),
              (paths[2], [{"frame": "survey", **survey, "totals": note}], ["totals"]))
    for path, rows, extra in tables:
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["frame", *keys, *extra], restval=0, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, table.getvalue())
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>roadparse measurements</title></head><body>"
            f"<h1>Measurements</h1>{measurements_html(frames, survey, note)}</body></html>")
    atomic_write_text(paths[3], page)
    return paths


def _chart(survey: dict[str, float | int]) -> str:
    """Returns an <img> bar chart of the survey's areas (m²) and lengths (m)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    areas = {k.removeprefix("area_m2."): v for k, v in survey.items() if k.startswith("area_m2.")}
    lengths = {k.removesuffix("_m"): v for k, v in survey.items() if k.endswith("_m")}
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 2.8), dpi=100)
    for ax, values, unit in ((axes[0], areas, "m²"), (axes[1], lengths, "m")):
        ax.barh(list(values), list(values.values()), color="#4a78b0")
        ax.set_xlabel(unit)
        ax.tick_params(labelsize=8)
    axes[0].set_title("area per class", fontsize=9)
    axes[1].set_title("centre-line length", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"<img alt='measurements chart' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def measurements_html(frames: dict[str, dict[str, Any]], survey: dict[str, float | int] | None = None,
                      note: str = SUMMED) -> str:
    """Returns an HTML fragment for reports: a table (a row per frame, the survey last) and a bar chart.

    ``survey`` defaults to the sums over frames; ``note`` says what the survey figures are.
    """
    survey = survey if survey is not None else survey_measurements(frames)
    keys = list(dict.fromkeys([*survey, *(key for values in frames.values() for key in values)]))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = [f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{values.get(k, 0):g}</td>" for k in keys) + "</tr>"
            for name, values in [*frames.items(), ("survey", survey)]]
    text = ("<p class='note'>Areas in m² from pixel counts; lengths in m along exported centre-lines; "
            f"survey: {html.escape(note)}.</p>")
    return f"{text}<table><tr><th>frame</th>{head}</tr>{''.join(rows)}</table>{_chart(survey)}"
