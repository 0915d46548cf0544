"""The urban family: city streets from a drone, with exact per-pixel ground truth.

A second synthetic family, rendered by other code than the highway family
(``synth/scene.py``), so that settings chosen on one can be scored on the other.
``render_urban_frame`` paints, in order: lawn or roofs, paver sidewalks, kerbs, city
asphalt; utility patches; worn markings (centre line, no-parking line, parking bays,
zebra crosswalk, stop lines, arrows); crack sealing (overbanded patch joints and sealed
cracks) and unsealed hairline cracks; manholes; wet patches with sky reflections; parked
cars, a galvanised guardrail, traffic cones; then hard shadows (buildings, trees, poles,
the objects themselves) with blue skylight, and a warm or cool camera.

Same 7 classes as the highway family. Kerbs, sidewalks, cars, lawns and roofs are
``other``; manhole covers and their collars, patches, stains, hairline cracks and wet
asphalt are ``road``; the label of paint is the paint that is visible (worn-off parts are road).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from roadparse.synth import texture
from roadparse.synth.primitives import (
    band_mask,
    dashed_mask,
    meander,
    polygon_mask,
    polyline_mask,
    rotated_rect,
)
from roadparse.synth.scene import (
    CRACK_SEALING,
    GUARDRAIL,
    OTHER,
    ROAD,
    WHITE_MARKING,
    YELLOW_MARKING,
    Canvas,
)
from roadparse.synth.urban_layout import StreetPlan, plan_street
from roadparse.synth.urban_materials import (
    camera,
    kerb_stone,
    lawn_or_roof,
    pavers,
    urban_asphalt,
    wet_surface,
)
from roadparse.synth.urban_objects import paint_car, paint_cone, paint_guardrail, paint_manhole

DEFAULT_GSD_CM = 0.5
"""The urban family's default ground sampling distance (lower flights over streets)."""

_WHITE = ([214, 214, 206], [238, 238, 232])
_YELLOW = ([215, 165, 25], [240, 195, 70])
_WETTABLE = np.array([ROAD, WHITE_MARKING, YELLOW_MARKING, CRACK_SEALING], dtype=np.uint8)


def _area_m2(plan: StreetPlan) -> float:
    """Returns the ground area the frame covers, in square metres."""
    return plan.height * plan.width / plan.px_per_m**2


def _paint_ground(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, u: np.ndarray, v: np.ndarray,
    fields: texture.GroundFields,
) -> np.ndarray:
    """Paints lawn/roofs, sidewalks, kerbs and the asphalt; returns the (H, W) bool carriageway."""
    section = plan.section
    canvas.paint(np.ones(canvas.shape, dtype=bool), lawn_or_roof(rng, fields, np.ones(canvas.shape, bool)), OTHER)
    for band in (section.sidewalk_a, section.sidewalk_b):
        walk = band_mask(v, *band)
        canvas.paint(walk, pavers(rng, u, v, walk, plan.px_per_m, fields), OTHER)
    for band, road_side in ((section.kerb_a, 1), (section.kerb_b, 0)):
        kerb = band_mask(v, *band)
        t = (v[kerb] - np.float32(band[0])) / np.float32(band[1] - band[0])
        canvas.paint(kerb, kerb_stone(rng, 1 - t if road_side else t, fields.grain[kerb]), OTHER)
    road = band_mask(v, *section.carriageway)
    tone = float(rng.uniform(68.0, 125.0))
    tint = 1.0 + np.array([rng.uniform(-0.02, 0.04), 0.0, rng.uniform(-0.04, 0.03)])
    canvas.paint(road, urban_asphalt(fields, road, tone, tint), ROAD)
    _paint_patches(rng, canvas, plan, road, fields, tone, tint)
    return road


def _paint_patches(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, road: np.ndarray,
    fields: texture.GroundFields, tone: float, tint: np.ndarray,
) -> None:
    """Paints rectangular utility-cut patches; most get overband sealant along their joints."""
    rows, cols = np.nonzero(road[::8, ::8])
    n_patches = int(rng.integers(0, 3)) + int(_area_m2(plan) / 80)
    for pick in rng.integers(0, max(rows.size, 1), size=n_patches if rows.size else 0):
        centre = (cols[pick] * 8.0, rows[pick] * 8.0)
        size = (plan.metres(rng, 0.8, 3.0), plan.metres(rng, 0.6, 2.0))
        angle = plan.axis.angle + (np.pi / 2 if rng.random() < 0.4 else 0.0) + rng.normal(0, 0.03)
        corners = rotated_rect(centre, size, angle)
        mask = polygon_mask(canvas.shape, corners) & road
        shift = rng.uniform(-30.0, -10.0) if rng.random() < 0.6 else rng.uniform(8.0, 20.0)
        canvas.paint(mask, urban_asphalt(fields, mask, tone + shift, tint), ROAD)
        if rng.random() < 0.7:
            joint = polyline_mask(canvas.shape, np.vstack([corners, corners[:1]]),
                                  int(round(plan.metres(rng, 0.04, 0.08)))) & road
            _paint_sealant(rng, canvas, joint, fields)


def _paint_sealant(
    rng: np.random.Generator, canvas: Canvas, mask: np.ndarray, fields: texture.GroundFields
) -> None:
    """Paints dark, slightly glossy sealant over the ``mask`` pixels (labelled crack_sealing)."""
    base = np.float32(rng.uniform(16.0, 34.0))
    gloss = np.clip(fields.mid[mask], 0.0, None) * np.float32(rng.uniform(6.0, 16.0))
    canvas.paint(mask, (base + gloss + 1.5 * fields.grain[mask])[:, None] * np.ones(3, np.float32), CRACK_SEALING)


def _wear(rng: np.random.Generator, canvas: Canvas, plan: StreetPlan) -> np.ndarray:
    """Returns (H, W) bool: where paint has worn off (5-35 % of it, in blotches)."""
    fraction = rng.uniform(0.05, 0.35)
    field = texture.fractal_noise(rng, *canvas.shape, (0.04 * plan.px_per_m, 0.3 * plan.px_per_m), (0.5, 0.9))
    threshold = NormalDist().inv_cdf(1.0 - fraction) * float(field[::9, ::9].std())
    return field > np.float32(threshold)


def _line_masks(plan: StreetPlan, u: np.ndarray, v: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Returns (mask, class id) of the longitudinal lines: centre, no-parking, parking bays."""
    section = plan.section
    lines: list[tuple[np.ndarray, int]] = []
    for band in section.centre_lines:
        if section.centre_yellow:
            lines.append((band_mask(v, *band), YELLOW_MARKING))
        else:
            lines.append((dashed_mask(u, v, *band, *section.centre_dash, phase=float(u.min())), WHITE_MARKING))
    if section.yellow_kerb is not None:
        lines.append((band_mask(v, *section.yellow_kerb), YELLOW_MARKING))
    width = section.parking_line_width
    for parking, lane_edge in ((section.parking_a, 1), (section.parking_b, 0)):
        if parking is None:
            continue
        edge = parking[lane_edge]
        bay = band_mask(v, edge - width / 2, edge + width / 2)
        # T-marks between bays, 6 m apart, 0.5 m into the bay.
        depth = 0.5 * plan.px_per_m * (-1 if lane_edge else 1)
        stub = band_mask(v, min(edge, edge + depth), max(edge, edge + depth))
        stub &= np.mod(u, np.float32(6.0 * plan.px_per_m)) < np.float32(width)
        lines.append((bay | stub, WHITE_MARKING))
    return lines


def _crossing_masks(rng: np.random.Generator, plan: StreetPlan, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((H, W) bool white paint of crosswalk, stop lines and arrows, (H, W) bool zone
    where the longitudinal lines stop)."""
    cross = plan.crosswalk
    paint = np.zeros(u.shape, dtype=bool)
    zone = np.zeros(u.shape, dtype=bool)
    section = plan.section
    arrow_at: tuple[tuple[tuple[float, float], float, float], ...]
    if cross is not None:
        lo, hi = cross.u - cross.width / 2, cross.u + cross.width / 2
        zone = band_mask(u, lo - 0.3 * plan.px_per_m, hi + 0.3 * plan.px_per_m)
        v0 = section.carriageway[0] + 0.3 * plan.px_per_m
        period = np.float32(cross.bar + cross.gap)
        bars = band_mask(u, lo, hi) & band_mask(v, v0, section.carriageway[1] - 0.3 * plan.px_per_m)
        bars &= np.mod(v - np.float32(v0), period) < np.float32(cross.bar)
        stop_b = band_mask(u, lo - cross.stop_gap - cross.stop_width, lo - cross.stop_gap) & band_mask(v, *section.lane_b)
        stop_a = band_mask(u, hi + cross.stop_gap, hi + cross.stop_gap + cross.stop_width) & band_mask(v, *section.lane_a)
        paint |= bars | stop_a | stop_b
        arrow_at = ((section.lane_b, lo - cross.stop_gap - plan.metres(rng, 1.5, 4.0), 1.0),
                    (section.lane_a, hi + cross.stop_gap + plan.metres(rng, 1.5, 4.0), -1.0))
    else:
        u_mid = float(rng.uniform(*plan.u_range))
        arrow_at = ((section.lane_b, u_mid, 1.0), (section.lane_a, u_mid, -1.0)) if rng.random() < 0.5 else ()
    for lane, tip_u, direction in arrow_at:
        paint |= _arrow_mask(rng, plan, u.shape, lane, tip_u, direction)
    return paint, zone


def _arrow_mask(
    rng: np.random.Generator, plan: StreetPlan, shape: tuple[int, int], lane: tuple[float, float],
    tip_u: float, direction: float,
) -> np.ndarray:
    """Returns (H, W) bool: a lane arrow (straight, or with a turn branch) whose tip is at ``tip_u``."""
    m = plan.px_per_m
    length, shaft, head_w = rng.uniform(3.0, 5.0) * m, rng.uniform(0.15, 0.22) * m, rng.uniform(0.5, 0.7) * m
    head_l = rng.uniform(0.9, 1.3) * m
    centre_v = 0.5 * (lane[0] + lane[1])
    # (along, across) polygons in metres-as-pixels, along measured back from the tip.
    polygons = [
        np.array([[0.0, 0.0], [head_l, head_w / 2], [head_l, -head_w / 2]]),
        np.array([[head_l, shaft / 2], [length, shaft / 2], [length, -shaft / 2], [head_l, -shaft / 2]]),
    ]
    if rng.random() < 0.4:  # a turn branch leaving the shaft at 45 degrees
        side = float(rng.choice([-1.0, 1.0]))
        start = length * 0.55
        bend = np.array([start - 0.9 * m, side * 0.9 * m])
        polygons.append(np.array([[start, shaft / 2 * side], bend + [0, shaft / 2 * side],
                                  bend - [0, shaft / 2 * side], [start + shaft, -shaft / 2 * side]]))
        polygons.append(bend + np.array([[-0.6 * m, 0.15 * m * side], [0.4 * m, 0.45 * m * side],
                                         [0.2 * m, -0.35 * m * side]]))
    mask = np.zeros(shape, dtype=bool)
    for polygon in polygons:
        along_u = tip_u - direction * polygon[:, 0]
        across_v = centre_v + direction * polygon[:, 1]
        x, y = plan.axis.to_xy(along_u, across_v)
        mask |= polygon_mask(shape, np.stack([x, y], axis=1))
    return mask


def _paint_markings(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, u: np.ndarray, v: np.ndarray,
    road: np.ndarray, fields: texture.GroundFields,
) -> None:
    """Paints every marking, worn: the label is the visible paint, worn-off paint is road."""
    worn = _wear(rng, canvas, plan)
    crossing, zone = _crossing_masks(rng, plan, u, v)
    white = rng.uniform(*_WHITE).astype(np.float32)
    yellow = rng.uniform(*_YELLOW).astype(np.float32)
    marks = [(line & ~zone, class_id) for line, class_id in _line_masks(plan, u, v)] + [(crossing, WHITE_MARKING)]
    for line, class_id in marks:
        line &= road
        canvas.image[line & worn] += np.float32(rng.uniform(4.0, 14.0))
        paint = line & ~worn
        colour = yellow if class_id == YELLOW_MARKING else white
        luma = 1.0 + 0.03 * fields.grain[paint] + 0.04 * fields.mid[paint]
        canvas.paint(paint, luma[:, None] * colour[None, :], class_id)


def _paint_cracks(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, road: np.ndarray, fields: texture.GroundFields
) -> None:
    """Paints sealed cracks (crack_sealing) and unsealed hairline cracks (road, darker)."""
    rows, cols = np.nonzero(road[::8, ::8])
    if rows.size == 0:
        return
    n_sealed = int(rng.integers(1, 4)) + int(_area_m2(plan) / 25)
    n_hair = int(rng.integers(1, 5))
    for k in range(n_sealed + n_hair):
        pick = int(rng.integers(0, rows.size))
        start = (cols[pick] * 8.0, rows[pick] * 8.0)
        heading = plan.axis.angle + (0.0 if rng.random() < 0.5 else rng.uniform(0, np.pi))
        path = meander(rng, start, heading, plan.metres(rng, 0.8, 4.0), 0.03 * plan.px_per_m, 0.3)
        sealed = k < n_sealed
        width = plan.metres(rng, 0.02, 0.05) if sealed else plan.metres(rng, 0.004, 0.012)
        mask = polyline_mask(canvas.shape, path, max(1, int(round(width)))) & road
        if sealed:
            _paint_sealant(rng, canvas, mask, fields)
        else:
            canvas.image[mask] *= np.float32(rng.uniform(0.6, 0.8))


def _place_objects(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, road: np.ndarray,
    fields: texture.GroundFields,
) -> None:
    """Paints manholes, parked cars and (rarely) a group of traffic cones."""
    section, m = plan.section, plan.px_per_m
    rows, cols = np.nonzero(road[::8, ::8])
    manholes = []
    for _ in range(int(rng.integers(0, 3)) if rows.size else 0):
        pick = int(rng.integers(0, rows.size))
        manholes.append((cols[pick] * 8.0, rows[pick] * 8.0))
        paint_manhole(rng, canvas, manholes[-1], plan.metres(rng, 0.3, 0.4), fields)
    keep_clear = None if plan.crosswalk is None else (plan.crosswalk.u, plan.crosswalk.width / 2 + 5.0 * m)
    for parking in (section.parking_a, section.parking_b):
        if parking is None:
            continue
        along = plan.u_range[0] - 5.0 * m
        while along < plan.u_range[1] + 5.0 * m:
            car = rng.uniform(3.9, 4.9) * m
            length = car + rng.uniform(0.4, 1.5) * m
            centre_u = along + length / 2
            if rng.random() < 0.75 and (keep_clear is None or abs(centre_u - keep_clear[0]) > keep_clear[1]):
                x, y = plan.axis.to_xy(centre_u, 0.5 * (parking[0] + parking[1]) + rng.normal(0, 0.08) * m)
                heading = plan.axis.angle + np.pi * int(rng.integers(0, 2)) + rng.normal(0, 0.02)
                paint_car(rng, canvas, plan, (float(x), float(y)), heading, car, fields)
            along += length
    if rows.size and rng.random() < 0.6:
        anchor = manholes[0] if manholes else (cols[rng.integers(0, rows.size)] * 8.0, rows[rng.integers(0, rows.size)] * 8.0)
        step = rng.uniform(0.6, 1.5) * m
        direction = np.array([np.cos(plan.axis.angle), np.sin(plan.axis.angle)])
        for k in range(int(rng.integers(1, 6))):
            centre = np.asarray(anchor) + direction * step * (k - 1) + rng.normal(0, 0.1 * m, size=2)
            col, row = int(np.clip(centre[0], 0, plan.width - 1)), int(np.clip(centre[1], 0, plan.height - 1))
            if canvas.label[row, col] == GUARDRAIL:  # no cone on the rail
                continue
            paint_cone(rng, canvas, plan, (float(centre[0]), float(centre[1])), fields)


def _cast_scene_shadows(rng: np.random.Generator, canvas: Canvas, plan: StreetPlan) -> None:
    """Casts hard shadows: a building edge, tree crowns with sun flecks, lamp poles."""
    height, width = canvas.shape
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    softness = np.float32(max(1.0, 0.015 * plan.px_per_m))
    if rng.random() < 0.45:
        normal = rng.uniform(0, 2 * np.pi)
        side = (xs - width / 2) * np.float32(np.cos(normal)) + (ys - height / 2) * np.float32(np.sin(normal))
        edge = np.float32(rng.uniform(0.0, 0.35) * min(height, width))
        ramp = np.clip((side - edge) / softness + 0.5, 0.0, 1.0)
        canvas.cast_shadow(ramp * np.float32(rng.uniform(0.5, 0.65)))
    if rng.random() < 0.4:
        crown = texture.value_noise(rng, height, width, 1.5 * plan.px_per_m)
        flecks = texture.value_noise(rng, height, width, 0.2 * plan.px_per_m)
        field = crown + 0.25 * flecks - np.float32(rng.uniform(0.6, 1.2))
        canvas.cast_shadow(np.clip(field * 8.0, 0.0, 1.0) * np.float32(rng.uniform(0.45, 0.6)))
    for _ in range(int(rng.integers(0, 3))):
        start = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        heading = plan.sun_angle + np.pi
        end = start + plan.metres(rng, 4.0, 9.0) * np.array([np.cos(heading), np.sin(heading)])
        pole = polyline_mask(canvas.shape, np.stack([start, end]), int(round(plan.metres(rng, 0.1, 0.2))))
        canvas.cast_shadow(pole.astype(np.float32) * np.float32(rng.uniform(0.5, 0.6)))


def _paint_wet(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, fields: texture.GroundFields
) -> None:
    """Wets the ground in large patches (about every other frame): darker, with sky reflections."""
    if rng.random() >= 0.45:
        return
    height, width = canvas.shape
    field = texture.value_noise(rng, height, width, 2.0 * plan.px_per_m)
    wet = (field > np.float32(rng.uniform(-0.3, 0.8))) & np.isin(canvas.label, _WETTABLE)
    sheen = texture.value_noise(rng, height, width, 1.0 * plan.px_per_m) + 0.1 * fields.large
    wet_surface(rng, canvas.image, wet, sheen)


def render_urban_frame(
    rng: np.random.Generator, width: int, height: int, gsd_cm: float = DEFAULT_GSD_CM
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((H, W, 3) uint8 RGB frame, (H, W) uint8 class ids) of a random urban street.

    Args:
        rng: the only source of randomness; the same generator state gives the same frame.
        width: frame width in pixels.
        height: frame height in pixels.
        gsd_cm: ground sampling distance in cm per pixel (meant for 0.25-1).

    Raises:
        ValueError: non-positive size or GSD.
    """
    if width <= 0 or height <= 0 or gsd_cm <= 0:
        raise ValueError(f"frame size and GSD must be positive, got {width}x{height} at {gsd_cm} cm/px")
    plan = plan_street(rng, width, height, 100.0 / gsd_cm)
    canvas = Canvas.blank(height, width)
    u, v = plan.axis.coords(height, width)
    fields = texture.GroundFields.make(rng, height, width, plan.px_per_m)
    road = _paint_ground(rng, canvas, plan, u, v, fields)
    _paint_markings(rng, canvas, plan, u, v, road, fields)
    _paint_cracks(rng, canvas, plan, road, fields)
    paint_guardrail(rng, canvas, plan, u, v, fields)
    _place_objects(rng, canvas, plan, road, fields)
    _paint_wet(rng, canvas, plan, fields)
    _cast_scene_shadows(rng, canvas, plan)
    return camera(rng, canvas.image, canvas.shade), canvas.label
