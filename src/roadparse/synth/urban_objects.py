"""Objects standing in an urban street: parked cars, manholes, a guardrail, traffic cones.

Each painter writes colours and class ids through one boolean mask per part (labels line
up with pixels exactly) and casts the object's hard sun shadow into ``Canvas.shade``
(labels under a shadow stay what they are). Heights are in metres, so shadow lengths
follow the sun elevation of the frame.
"""

from __future__ import annotations

import numpy as np

from roadparse.synth import texture
from roadparse.synth.primitives import band_mask, disc_mask, polygon_mask, ring_mask, rotated_rect
from roadparse.synth.scene import GUARDRAIL, OTHER, ROAD, TRAFFIC_CONE, Canvas
from roadparse.synth.urban_layout import StreetPlan
from roadparse.synth.urban_materials import CAR_PAINT_ODDS, CAR_PAINTS, cast_iron, galvanised


def shadow_offset(plan: StreetPlan, height_m: float) -> np.ndarray:
    """Returns (2,) float64 (dx, dy) pixels from an object's top to its shadow on the ground."""
    length = height_m / np.tan(np.deg2rad(plan.sun_elevation)) * plan.px_per_m
    return -length * np.array([np.cos(plan.sun_angle), np.sin(plan.sun_angle)])


def _local_coords(
    shape: tuple[int, int], centre: tuple[float, float], heading: float
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (a, c): (h, w) float32 coordinates along and across an object at ``centre``."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dx, dy = xs - np.float32(centre[0]), ys - np.float32(centre[1])
    cos, sin = np.float32(np.cos(heading)), np.float32(np.sin(heading))
    return dx * cos + dy * sin, dy * cos - dx * sin


def _grain(fields: texture.GroundFields, view: Canvas, ox: int, oy: int) -> np.ndarray:
    """Returns the (h, w) float32 grain field under a window painted at (ox, oy)."""
    return fields.grain[oy : oy + view.shape[0], ox : ox + view.shape[1]]


def _rounded_rect(a: np.ndarray, c: np.ndarray, length: float, width: float, radius: float) -> np.ndarray:
    da = np.maximum(np.abs(a) - np.float32(length / 2 - radius), 0.0)
    dc = np.maximum(np.abs(c) - np.float32(width / 2 - radius), 0.0)
    return da * da + dc * dc <= np.float32(radius * radius)


def paint_car(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, centre: tuple[float, float],
    heading: float, length: float, fields: texture.GroundFields,
) -> None:
    """Paints a parked car ``length`` px long from above (labelled other) and its hard shadow."""
    width = plan.metres(rng, 1.7, 1.9)
    offset = shadow_offset(plan, rng.uniform(1.4, 1.6))
    reach = length / 2 + np.abs(offset).max() + 4
    found = canvas.window(centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach)
    if found is None:
        return
    view, ox, oy = found
    grain = _grain(fields, view, ox, oy)
    local = (centre[0] - ox, centre[1] - oy)
    a, c = _local_coords(view.shape, local, heading)
    body = _rounded_rect(a, c, length, width, 0.28 * width)
    shadow = np.zeros(view.shape, dtype=bool)
    for t in (0.35, 0.7, 1.0):  # the swept footprint of the car's box
        sa, sc = _local_coords(view.shape, (local[0] + t * offset[0], local[1] + t * offset[1]), heading)
        shadow |= _rounded_rect(sa, sc, length, width * 0.95, 0.3 * width)
    view.cast_shadow(shadow.astype(np.float32) * np.float32(rng.uniform(0.55, 0.7)), exclude=body)
    paint = CAR_PAINTS[rng.choice(len(CAR_PAINTS), p=CAR_PAINT_ODDS)] * rng.uniform(0.92, 1.06)
    s = a / np.float32(length / 2)
    across = np.abs(c) / np.float32(width / 2)
    curvature = 1.06 - 0.22 * across**2 + 0.02 * grain
    colours = curvature[body][:, None] * paint.astype(np.float32)[None, :]
    view.paint(body, np.clip(colours, 0, 255), OTHER)
    glass_colour = rng.uniform([22, 26, 32], [45, 50, 60]).astype(np.float32)
    windscreen = body & (s > 0.12) & (s < 0.42) & (across < 0.86 - 0.3 * (s - 0.12))
    rear = body & (s > -0.74) & (s < -0.52) & (across < 0.8)
    for glass in (windscreen, rear):
        sheen = 1.0 + 0.6 * np.clip(1.0 - np.abs(c[glass] / np.float32(width / 2) - 0.3) * 3.0, 0.0, 1.0)
        view.image[glass] = sheen[:, None] * glass_colour[None, :]
    for side in (-1.0, 1.0):  # wing mirrors
        mirror = polygon_mask(view.shape, rotated_rect(
            _along(local, heading, 0.3 * length / 2, side * (width / 2 + 0.06 * plan.px_per_m)),
            (0.12 * plan.px_per_m, 0.14 * plan.px_per_m), heading))
        view.paint(mirror & ~body, paint * 0.8, OTHER)


def _along(origin: tuple[float, float], heading: float, a: float, c: float) -> tuple[float, float]:
    """Returns (x, y) of the point ``a`` along and ``c`` across ``heading`` from ``origin``."""
    cos, sin = np.cos(heading), np.sin(heading)
    return origin[0] + a * cos - c * sin, origin[1] + a * sin + c * cos


def paint_manhole(
    rng: np.random.Generator, canvas: Canvas, centre: tuple[float, float], radius: float,
    fields: texture.GroundFields,
) -> None:
    """Paints a round cast-iron manhole cover in its concrete collar, labelled road (it is part
    of the carriageway surface, as are the patches and stains around it)."""
    collar = radius * rng.uniform(1.15, 1.3)
    found = canvas.window(centre[0] - collar - 1, centre[1] - collar - 1, centre[0] + collar + 1, centre[1] + collar + 1)
    if found is None:
        return
    view, ox, oy = found
    local = (centre[0] - ox, centre[1] - oy)
    ring = ring_mask(view.shape, local, radius, collar)
    patch = _grain(fields, view, ox, oy)
    view.paint(ring, (rng.uniform(120, 150) + 5 * patch[ring])[:, None] * np.ones(3, np.float32), ROAD)
    cover = disc_mask(view.shape, local, radius)
    ys, xs = np.nonzero(cover)
    radial = np.hypot(xs - local[0], ys - local[1]) / np.float32(radius)
    angle = np.arctan2(ys - local[1], xs - local[0])
    view.paint(cover, cast_iron(rng, radial, angle, patch[cover]), ROAD)


def paint_guardrail(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, u: np.ndarray, v: np.ndarray,
    fields: texture.GroundFields,
) -> None:
    """Paints the galvanised W-beam behind the kerb, its posts and its shadow."""
    rail = plan.guardrail
    if rail is None:
        return
    along = band_mask(u, *rail.u_range)
    if plan.crosswalk is not None:  # pedestrians cross through a gap in the rail
        half = plan.crosswalk.width / 2 + 0.5 * plan.px_per_m
        along &= ~band_mask(u, plan.crosswalk.u - half, plan.crosswalk.u + half)
    beam = band_mask(v, *rail.band) & along
    if not beam.any():
        return
    width = rail.band[1] - rail.band[0]
    post_depth = plan.metres(rng, 0.1, 0.15)
    edge = rail.band[1] if rail.post_side > 0 else rail.band[0] - post_depth
    posts = band_mask(v, edge, edge + post_depth) & along & np.bool_(rail.post_side != 0)
    spacing = plan.metres(rng, 1.8, 2.2)
    posts[posts] = np.mod(u[posts], np.float32(spacing)) < np.float32(0.15 * plan.px_per_m)
    # The beam stands ~0.75 m high: its shadow is the band shifted across the street.
    offset = shadow_offset(plan, 0.75)
    shift = float(-offset[0] * np.sin(plan.axis.angle) + offset[1] * np.cos(plan.axis.angle))
    shadow = band_mask(v, rail.band[0] + shift, rail.band[1] + shift) & along
    canvas.cast_shadow(shadow.astype(np.float32) * np.float32(rng.uniform(0.45, 0.6)), exclude=beam | posts)
    t = (v[beam] - np.float32(rail.band[0])) / np.float32(width)
    mottle = 1.2 * fields.mid[beam] + 0.8 * fields.stones[beam]
    canvas.paint(beam, galvanised(rng, t, mottle, fields.grain[beam]), GUARDRAIL)
    canvas.paint(posts, (rng.uniform(120, 150) + 6 * fields.grain[posts])[:, None] * np.ones(3, np.float32), GUARDRAIL)


def paint_cone(
    rng: np.random.Generator, canvas: Canvas, plan: StreetPlan, centre: tuple[float, float],
    fields: texture.GroundFields,
) -> None:
    """Paints a traffic cone from above (red-orange body, two silver bands, a black rubber base,
    all labelled traffic_cone) and its long triangular shadow."""
    radius = plan.metres(rng, 0.14, 0.19)
    offset = shadow_offset(plan, rng.uniform(0.5, 0.75))
    reach = 1.5 * radius + np.abs(offset).max() + 2
    found = canvas.window(centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach)
    if found is None:
        return
    view, ox, oy = found
    cx, cy = centre[0] - ox, centre[1] - oy
    base = polygon_mask(view.shape, rotated_rect((cx, cy), (1.85 * radius, 1.85 * radius), rng.uniform(0, np.pi)))
    body = disc_mask(view.shape, (cx, cy), radius)
    normal = np.array([-offset[1], offset[0]]) / max(float(np.hypot(*offset)), 1e-6) * radius
    triangle = np.array([[cx + normal[0], cy + normal[1]], [cx - normal[0], cy - normal[1]],
                         [cx + offset[0], cy + offset[1]]])
    shadow = polygon_mask(view.shape, triangle) | disc_mask(view.shape, (cx + 0.3 * offset[0], cy + 0.3 * offset[1]), 0.9 * radius)
    view.cast_shadow(shadow.astype(np.float32) * np.float32(rng.uniform(0.5, 0.65)), exclude=base | body)
    local = _grain(fields, view, ox, oy)
    rim = base & ~body
    view.paint(rim, (rng.uniform(22, 38) + 3 * local[rim])[:, None] * np.ones(3, np.float32), TRAFFIC_CONE)
    colour = rng.uniform([215, 55, 20], [240, 90, 45]).astype(np.float32)
    ys, xs = np.nonzero(body)
    dist = np.hypot(xs - cx, ys - cy) / np.float32(radius)
    view.paint(body, (1.05 - 0.25 * dist)[:, None].astype(np.float32) * colour[None, :], TRAFFIC_CONE)
    silver = np.float32(rng.uniform(190, 225))
    for inner, outer in ((0.38, 0.5), (0.7, 0.82)):
        band = ring_mask(view.shape, (cx, cy), inner * radius, outer * radius)
        view.image[band] = silver + 4 * local[band][:, None]
    view.image[disc_mask(view.shape, (cx, cy), 0.12 * radius)] = np.float32(35.0)
