"""Markings as a road authority counts them: each dash and each solid line, its envelope and its wear.

Paint of one marking class is cut into pieces by wear; pieces closer than :data:`GAP_M` are
one marking. A marking longer than :data:`SOLID_MIN_M` is a solid line, a shorter one a
dash. Its *envelope* is the paint as it was laid: the minimum rotated rectangle of a dash,
the band of a solid line (:func:`solid_envelope`). Wear is the
share of the envelope without paint, measured in the envelope's *core*, one pixel inside
its outline: the pixel staircase of a slanted outline is neither paint nor wear, and on a
15 cm line six pixels wide it would otherwise move the figure by about 15 points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

GAP_M = 1.0
"""Paint pieces closer than this are one marking: wear gaps are shorter, gaps between dashes longer
(3 m and more in European and US standards). A solid line worn away over more than this is two markings."""
CHUNK_M = 2.0
"""A solid line's envelope is the union of the rectangles of its paint in stretches this long along the road:
each stretch is short enough to be straight, long enough that wear rarely takes a whole stretch's edge."""
SOLID_MIN_M = 10.0
"""Markings longer than this are solid lines; dashes are 1.5-9 m (European and US standards)."""


@dataclass
class Marking:
    """One dash or solid line of one survey."""

    class_name: str
    kind: Literal["dash", "solid"]
    paint: Any
    """(Multi)Polygon of the paint left"""
    envelope: Any
    """Polygon of the paint as laid"""
    core: Any
    """the envelope one pixel in from its outline (where wear is measured)"""
    pixel_m: float
    length_m: float
    """the envelope's length: the long side of a dash's rectangle; the sum of a solid line's stretch rectangles"""

    @property
    def wear(self) -> float:
        """Returns the share of the core without paint (0 = as new, 1 = gone)."""
        return 1.0 - self.paint.intersection(self.core).area / self.core.area if self.core.area > 0 else float("nan")


def _sides(rectangle: Any) -> tuple[float, float]:
    import numpy as np

    corners = np.asarray(rectangle.exterior.coords)
    if len(corners) < 4:
        return 0.0, 0.0
    return float(np.hypot(*(corners[1] - corners[0]))), float(np.hypot(*(corners[2] - corners[1])))


def solid_envelope(paint: Any, line: Any) -> tuple[Any, float]:
    """Returns (envelope, length) of a solid line's paint: the union of the minimum rotated rectangles of its paint
    in each :data:`CHUNK_M` stretch of the road ``line`` (cut square to it), each clipped to its stretch, and the
    sum of their long sides."""
    import numpy as np
    import shapely

    from roadparse.stages.report.chainage import corridor_cell

    s = [line.project(shapely.Point(c)) for c in np.asarray(paint.envelope.exterior.coords)]
    reach = 2.0 * max(paint.envelope.length, 1.0)
    parts, length = [], 0.0
    for s0 in np.arange(max(0.0, min(s) - CHUNK_M), min(line.length, max(s) + CHUNK_M), CHUNK_M):
        cell = corridor_cell(line, float(s0), float(min(s0 + CHUNK_M, line.length)), reach, reach, step_m=CHUNK_M)
        piece = paint.intersection(cell)
        if piece.area > 0:
            rectangle = shapely.minimum_rotated_rectangle(piece)
            parts.append(rectangle.intersection(cell))
            length += max(_sides(rectangle)) if rectangle.geom_type == "Polygon" else 0.0
    return shapely.union_all(parts), length


def _band_length(outline: Any) -> float:
    """Returns the length of a band with the outline's area and perimeter."""
    half_perimeter, area = outline.length / 2, outline.area
    return (half_perimeter + math.sqrt(max(half_perimeter**2 - 4 * area, 0.0))) / 2


def find_markings(paint: Any, class_name: str, pixel_m: float, lines: list[Any] | None = None) -> list[Marking]:
    """Returns the markings of one class's paint ((Multi)Polygon, overlap counted once).

    Args:
        paint: the class's paint in the survey.
        class_name: the class.
        pixel_m: ground size of a predicted pixel (the core is this far inside the envelope).
        lines: road centrelines (the nearest one cuts a solid line into stretches); without them a solid
            line's envelope is its paint closed over gaps up to :data:`GAP_M`.
    """
    import shapely

    if paint is None or paint.is_empty:
        return []
    pieces = list(getattr(paint, "geoms", [paint]))
    groups = shapely.union_all([piece.buffer(GAP_M / 2) for piece in pieces])
    tree = shapely.STRtree(pieces)
    markings = []
    for group in getattr(groups, "geoms", [groups]):
        members = [pieces[i] for i in tree.query(group, predicate="intersects")]
        group_paint = shapely.union_all(members)
        rectangle = shapely.minimum_rotated_rectangle(group_paint)
        long_side = max(_sides(rectangle)) if rectangle.geom_type == "Polygon" else 0.0
        if long_side >= SOLID_MIN_M:
            kind: Literal["dash", "solid"] = "solid"
            if lines:
                envelope, length = solid_envelope(group_paint, min(lines, key=lambda line: line.distance(group_paint)))
            else:
                envelope = group_paint.buffer(GAP_M / 2).buffer(-GAP_M / 2)  # a closing with a disc
                length = _band_length(envelope.simplify(2 * pixel_m))
        else:
            kind, envelope, length = "dash", rectangle, long_side
        core = envelope.buffer(-pixel_m)
        if envelope.is_empty or core.is_empty:
            continue
        markings.append(Marking(class_name, kind, group_paint, envelope, core, pixel_m, length))
    return markings
