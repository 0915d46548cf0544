"""Figures per chainage interval: coverage, areas, marking length and wear, crack sealing, cones.

Areas and lengths are clipped to the interval's corridor cell (a solid line or a sealing
strip across a cut is split between the two intervals); a dash, a cone and a marking's
wear go to the interval its representative point projects into.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from roadparse.stages.report.chainage import Interval, chainage_offset
from roadparse.stages.report.markings import Marking
from roadparse.stages.report.survey import MARKING_CLASSES, PAVED_CLASSES, SEALING_CLASS, Survey

Aggregate = Literal["mean", "worst"]


def _fraction(part: float, whole: float) -> float:
    return part / whole if whole > 0 else float("nan")


def owner(intervals: list[Interval], geometry: Any) -> Interval | None:
    """Returns the interval whose cell holds a geometry's representative point, or None outside every cell."""
    import shapely

    point = geometry if geometry.geom_type == "Point" else shapely.point_on_surface(geometry)
    return next((interval for interval in intervals if interval.cell.covers(point)), None)


def marking_rows(intervals: list[Interval], markings: list[Marking]) -> list[dict[str, Any]]:
    """Returns one record per marking inside the corridor: class, kind, road, chainage, offset, side, length, wear."""
    rows = []
    for marking in markings:
        interval = owner(intervals, marking.envelope)
        if interval is None:
            continue
        s, offset = chainage_offset(interval.road.line if interval.direction == "forward" else interval.road.line.reverse(),
                                    marking.envelope)
        rows.append({"road_id": interval.road.id, "direction": interval.direction, "interval": interval.index,
                     "class": marking.class_name, "kind": marking.kind, "chainage_m": round(s, 3),
                     "offset_m": round(offset, 3), "side": "left" if offset > 0 else "right",
                     "length_m": round(marking.length_m, 3), "paint_m2": round(marking.paint.intersection(marking.envelope).area, 4),
                     "envelope_m2": round(marking.envelope.area, 4), "wear": round(marking.wear, 4),
                     "geometry": marking.envelope})
    return rows


def interval_wear(interval: Interval, intervals: list[Interval], markings: list[Marking], aggregate: Aggregate) -> float:
    """Returns the wear of one class's markings in an interval: ``mean`` = unpainted share of all their cores
    (solid lines clipped to the cell, dashes whole where their point projects), ``worst`` = the most worn one."""
    paint, core, worst = 0.0, 0.0, float("nan")
    for marking in markings:
        if marking.kind == "solid":
            part = marking.core.intersection(interval.cell)
        elif owner(intervals, marking.envelope) is interval:
            part = marking.core
        else:
            continue
        if part.area <= 0:
            continue
        painted = marking.paint.intersection(part).area
        paint, core = paint + painted, core + part.area
        worst = max(1.0 - painted / part.area, worst if not math.isnan(worst) else 0.0)
    if aggregate == "worst":
        return worst
    return 1.0 - paint / core if core > 0 else float("nan")


def interval_row(
    interval: Interval, intervals: list[Interval], survey: Survey, markings: dict[str, list[Marking]], aggregate: Aggregate,
) -> dict[str, Any]:
    """Returns the figures of one interval (keys are the CSV / GeoPackage fields)."""
    cell = interval.cell
    imaged = survey.imaged.intersection(cell).area
    row: dict[str, Any] = {
        "road_id": interval.road.id, "road_name": interval.road.name, "direction": interval.direction,
        "interval": interval.index, "from_m": round(interval.from_m, 3), "to_m": round(interval.to_m, 3),
        "length_m": round(interval.length_m, 3), "corridor_m2": round(cell.area, 3),
        "valid_share": round(_fraction(imaged, cell.area), 4), "invalid_share": round(1 - _fraction(imaged, cell.area), 4),
    }
    for name, area in sorted(survey.areas.items()):
        if name != "other":
            row[f"{name}_m2"] = round(area.intersection(cell).area, 4)
    paved = sum(row.get(f"{name}_m2", 0.0) for name in PAVED_CLASSES)
    row["paved_m2"] = round(paved, 4)
    for name in MARKING_CLASSES:
        own = markings.get(name, [])
        for kind in ("solid", "dash"):
            length = 0.0
            for marking in own:
                if marking.kind != kind:
                    continue
                if kind == "solid":
                    width = marking.envelope.area / marking.length_m if marking.length_m > 0 else 0.0
                    length += marking.envelope.intersection(cell).area / width if width > 0 else 0.0
                elif owner(intervals, marking.envelope) is interval:
                    length += marking.length_m
            row[f"{name}_{'dashed' if kind == 'dash' else kind}_m"] = round(length, 3)
        row[f"{name}_m"] = round(row[f"{name}_solid_m"] + row[f"{name}_dashed_m"], 3)
        row[f"{name}_wear"] = round(interval_wear(interval, intervals, own, aggregate), 4)
    sealing = survey.lines[SEALING_CLASS].intersection(cell).length if SEALING_CLASS in survey.lines else 0.0
    row["crack_sealing_m"] = round(sealing, 3)
    row["crack_sealing_m_per_100m2"] = round(100.0 * _fraction(sealing, paved), 4) if paved > 0 else float("nan")
    row["traffic_cone_count"] = sum(1 for cone in survey.cones if owner(intervals, cone) is interval)
    return row
