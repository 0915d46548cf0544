"""``roadparse compare``: what changed between two surveys of the same road, per chainage interval.

Both surveys are cut into the same intervals. Per interval and marking class: the change in
wear, measured for survey B inside survey A's marking envelopes (so both figures cover the
same paint as laid); A's markings without paint in B (missing); B's crack sealing that lies
off A's sealing (new). An interval that either survey imaged less than
:data:`COMPARABLE_COVERAGE` of is *not comparable*: nothing is reported as change there.
The two surveys must be predicted by the same model (or B by the model trained on A): a
model change moves class boundaries, which would read as wear.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from roadparse.stages.report.chainage import Direction
from roadparse.stages.report.intervals import owner
from roadparse.stages.report.outputs import html_page, strip_chart
from roadparse.stages.report.run import analyse, write_outputs
from roadparse.stages.report.survey import MARKING_CLASSES, SEALING_CLASS

COMPARABLE_COVERAGE = 0.95
"""An interval is compared only where both surveys imaged at least this share of its corridor."""
MISSING_PAINT = 0.05
"""A marking of A is missing in B when less than this share of its envelope's core shows B's paint."""
SEALING_MATCH_M = 0.10
"""B's sealing within this distance of A's sealing polygons is the same sealing (prediction edges move a little)."""
WEAR_TOLERANCE = 0.02
"""Wear changes up to this (2 points) are not reported as change (same ground, re-predicted)."""
SEALING_TOLERANCE_M = 0.10
"""New sealing up to this length per interval is not reported as change."""

COMPARE_PANELS = [
    ("change in marking wear (B − A)", [("white_marking_wear_change", "white"), ("yellow_marking_wear_change", "yellow")],
     "points"),
    ("markings missing in B", [("missing_markings", "missing")], "count"),
    ("new crack sealing", [("new_sealing_m", "new sealing")], "m"),
]


def compare_surveys(survey_a: str | Path, survey_b: str | Path, centreline: str | Path, out_dir: str | Path, *,
                    interval_m: float = 10.0, corridor_m: float = 10.0, direction: Direction = "forward") -> dict[str, Any]:
    """Compares two exported surveys along the centreline and writes ``compare.gpkg``, ``changes.csv``, ``missing_markings.csv``, ``compare.html`` to ``out_dir``.

    Returns the interval rows and the missing markings (without geometry) and the files written.
    """
    a = analyse(survey_a, centreline, interval_m, corridor_m, direction)
    b = analyse(survey_b, centreline, interval_m, corridor_m, direction)
    rows, missing_rows = [], []
    new_sealing = None
    if SEALING_CLASS in b.survey.lines:
        new_sealing = b.survey.lines[SEALING_CLASS].intersection(a.survey.imaged)
        if SEALING_CLASS in a.survey.areas:
            new_sealing = new_sealing.difference(a.survey.areas[SEALING_CLASS].buffer(SEALING_MATCH_M))
    for interval, row_a, row_b in zip(a.intervals, a.rows, b.rows, strict=True):
        comparable = min(row_a["valid_share"], row_b["valid_share"]) >= COMPARABLE_COVERAGE
        row: dict[str, Any] = {key: row_a[key] for key in ("road_id", "road_name", "direction", "interval", "from_m",
                                                           "to_m", "length_m")}
        row.update(valid_share_a=row_a["valid_share"], valid_share_b=row_b["valid_share"], comparable=int(comparable))
        missing = 0
        for name in MARKING_CLASSES:
            paint_b = b.survey.areas.get(name)
            core_a = paint_a = core_b = 0.0
            for marking in a.markings[name]:
                part = (marking.core.intersection(interval.cell) if marking.kind == "solid"
                        else marking.core if owner(a.intervals, marking.envelope) is interval else None)
                if part is None or part.area <= 0 or not comparable:
                    continue
                painted_b = paint_b.intersection(part).area if paint_b is not None else 0.0
                if marking.kind == "dash" and painted_b < MISSING_PAINT * part.area:
                    missing += 1
                    s = interval.from_m + interval.line.project(marking.envelope.centroid)
                    missing_rows.append({"road_id": row["road_id"], "direction": row["direction"],
                                         "interval": row["interval"], "class": name, "kind": marking.kind,
                                         "chainage_m": round(s, 3), "geometry": marking.envelope})
                    continue
                core_a += part.area
                paint_a += marking.paint.intersection(part).area
                core_b += painted_b
            change = ((paint_a - core_b) / core_a) if core_a > 0 else float("nan")
            row[f"{name}_wear_a"] = round(1 - paint_a / core_a, 4) if core_a > 0 else float("nan")
            row[f"{name}_wear_b"] = round(1 - core_b / core_a, 4) if core_a > 0 else float("nan")
            row[f"{name}_wear_change"] = round(100 * change, 2) if comparable else float("nan")
        row["missing_markings"] = missing if comparable else 0
        sealing = new_sealing.intersection(interval.cell).length if new_sealing is not None and comparable else 0.0
        row["new_sealing_m"] = round(sealing, 3) if comparable else float("nan")
        wear_changes = [abs(row[f"{n}_wear_change"]) for n in MARKING_CLASSES if not math.isnan(row[f"{n}_wear_change"])]
        row["changed"] = int(comparable and (missing > 0 or sealing > SEALING_TOLERANCE_M
                                             or any(w > 100 * WEAR_TOLERANCE for w in wear_changes)))
        rows.append({**row, "geometry": interval.line})
    chart = strip_chart(rows, COMPARE_PANELS, f"{Path(survey_a).name} → {Path(survey_b).name}")
    note = (f"A = {a.survey.path}, B = {b.survey.path}; both must be predicted by the same model. Intervals imaged "
            f"below {COMPARABLE_COVERAGE:.0%} in either survey are not comparable; changes within {WEAR_TOLERANCE:.0%} "
            f"wear and {SEALING_TOLERANCE_M:g} m sealing are not flagged.")
    page = html_page("roadparse compare", note, [("changes along chainage", chart)], rows)
    files = write_outputs(Path(out_dir), a.survey.crs_wkt, {"changes": (rows, None), "missing_markings": (missing_rows, None)},
                          page, chart, {"changes": rows, "missing_markings": missing_rows}, name="compare")
    strip = lambda records: [{k: v for k, v in r.items() if k != "geometry"} for r in records]  # noqa: E731
    return {"intervals": strip(rows), "missing": strip(missing_rows), "files": [str(f) for f in files]}
