"""Rendering of synthetic drone-view road frames with exact per-pixel ground truth.

``render_frame`` paints, in order: ground (vegetation, gravel, asphalt with grain),
asphalt patches, worn lane markings, crack-sealing strips, guardrails, traffic cones;
then multiplies cast shadows into the image (labels unchanged) and applies per-frame
lighting. Every painted primitive writes its colour and its class id through the same
boolean mask, so the label map lines up with the pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import cv2
import numpy as np

from roadparse.synth import texture
from roadparse.synth.layout import FramePlan, plan_frame, sample_points, u_extent
from roadparse.synth.primitives import (
    band_mask,
    dashed_mask,
    disc_mask,
    meander,
    polygon_mask,
    polyline_mask,
    ring_mask,
    rotated_rect,
)

# Class ids: positions in roadparse/data/classes.yaml (checked by the tests).
ROAD, WHITE_MARKING, YELLOW_MARKING, GUARDRAIL, CRACK_SEALING, TRAFFIC_CONE, OTHER = range(7)


@dataclass
class Canvas:
    """A frame being painted: (H, W, 3) float32 colours, (H, W) uint8 labels and an
    (H, W) float32 shade factor that cast shadows multiply into the colours at the end."""

    image: np.ndarray
    label: np.ndarray
    shade: np.ndarray = field(repr=False)

    @classmethod
    def blank(cls, height: int, width: int, class_id: int = OTHER) -> Canvas:
        """Returns a black canvas labelled ``class_id`` everywhere, without shadows."""
        return cls(
            image=np.zeros((height, width, 3), dtype=np.float32),
            label=np.full((height, width), class_id, dtype=np.uint8),
            shade=np.ones((height, width), dtype=np.float32),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        height, width = self.label.shape
        return height, width

    def paint(self, mask: np.ndarray, colours: np.ndarray, class_id: int | None) -> None:
        """Sets the ``mask`` pixels to ``colours`` ((N, 3) or (3,)) and, unless None, their label."""
        self.image[mask] = colours
        if class_id is not None:
            self.label[mask] = class_id

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[Canvas, int, int] | None:
        """Returns (view canvas, x0, y0) over the box clipped to the frame, or None if outside.

        The view shares memory with this canvas: painting it paints the frame.
        """
        height, width = self.shape
        ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        ix1, iy1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        rows, cols = slice(iy0, iy1), slice(ix0, ix1)
        return Canvas(self.image[rows, cols], self.label[rows, cols], self.shade[rows, cols]), ix0, iy0

    def cast_shadow(self, darkness: np.ndarray, exclude: np.ndarray | None = None) -> None:
        """Darkens by ``darkness`` ((H, W) float32, 0 = none, 1 = black) outside ``exclude``."""
        factor = 1.0 - darkness
        if exclude is not None:
            factor[exclude] = 1.0
        np.minimum(self.shade, factor, out=self.shade)


def _metres(plan: FramePlan, low: float, high: float, rng: np.random.Generator) -> float:
    return float(rng.uniform(low, high)) * plan.px_per_m


def _paint_ground(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, u: np.ndarray, v: np.ndarray,
    fields: texture.GroundFields,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Paints vegetation, gravel and asphalt; returns (asphalt mask, tone, tint)."""
    section = plan.section
    green = ~band_mask(v, section.beam[0], section.outer_beam[1])  # posts stand on it
    canvas.paint(green, texture.vegetation(rng, fields, green, plan.px_per_m), OTHER)
    stones = band_mask(v, *section.gravel) | band_mask(v, *section.outer_gravel)
    canvas.paint(stones, texture.gravel(rng, fields, stones, plan.px_per_m), OTHER)
    paved = band_mask(v, *section.asphalt)
    tone = float(rng.uniform(88.0, 120.0))
    tint = 1.0 + rng.uniform(-0.035, 0.035, size=3)
    canvas.paint(paved, texture.asphalt(fields, paved, tone, tint), ROAD)
    # Tyre tracks: slightly polished, lighter strips along each lane (still road).
    for lane_start, lane_end in (section.lane1, (section.dashed[1], section.edge_line[0])):
        half_width = 0.085 * (lane_end - lane_start)  # ~0.3 m in a 3.5 m lane
        for offset in (0.25, 0.7):
            centre = lane_start + offset * (lane_end - lane_start)
            track = paved & band_mask(v, centre - half_width, centre + half_width)
            canvas.image[track] *= np.float32(rng.uniform(1.02, 1.07))
    return paved, tone, tint


def _paint_patches(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, paved: np.ndarray,
    fields: texture.GroundFields, tone: float, tint: np.ndarray,
) -> None:
    """Paints repaired asphalt patches of a different tone and grain (labelled road)."""
    n_patches = int(rng.integers(0, 3)) + int(plan.height * plan.width / plan.px_per_m**2 / 60)
    for centre in sample_points(rng, plan, plan.section.asphalt, n_patches):
        size = (_metres(plan, 0.6, 2.5, rng), _metres(plan, 0.4, 1.5, rng))
        angle = plan.axis.angle + rng.normal(0, 0.05)
        corners = rotated_rect(tuple(centre), size, angle)
        # Fresh asphalt is mostly darker than the worn surface around it.
        shift = -rng.uniform(12.0, 28.0) if rng.random() < 0.7 else rng.uniform(6.0, 12.0)
        roughness = rng.uniform(0.5, 1.5)
        found = canvas.window(*corners.min(axis=0), *(corners.max(axis=0) + 1))
        if found is None:
            continue
        view, ox, oy = found
        rows, cols = slice(oy, oy + view.shape[0]), slice(ox, ox + view.shape[1])
        mask = polygon_mask(view.shape, corners - np.array([ox, oy])) & paved[rows, cols]
        local = fields.crop(oy, oy + view.shape[0], ox, ox + view.shape[1])
        view.paint(mask, texture.asphalt(local, mask, tone + shift, tint, roughness), ROAD)


def _paint_markings(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, u: np.ndarray, v: np.ndarray,
    fields: texture.GroundFields,
) -> None:
    """Paints the yellow edge line, the dashed white lane line and the white edge line, worn.

    Worn-off paint shows the asphalt (with a faint light residue) and is labelled road:
    the label is the paint that is visible.
    """
    section = plan.section
    wear_fraction = rng.uniform(0.02, 0.15)
    wear = texture.fractal_noise(
        rng, *canvas.shape, (0.05 * plan.px_per_m, 0.25 * plan.px_per_m), (0.6, 0.8)
    )
    worn = wear > np.float32(NormalDist().inv_cdf(1.0 - wear_fraction) * float(wear[::9, ::9].std()))
    lines = (
        (band_mask(v, *section.yellow), YELLOW_MARKING, rng.uniform([225, 175, 30], [245, 200, 70])),
        (
            dashed_mask(u, v, *section.dashed, section.dash, section.gap, section.phase),
            WHITE_MARKING,
            rng.uniform([222, 222, 215], [242, 242, 238]),
        ),
        (band_mask(v, *section.edge_line), WHITE_MARKING, rng.uniform([222, 222, 215], [242, 242, 238])),
    )
    for line, class_id, colour in lines:
        canvas.image[line & worn] += np.float32(rng.uniform(6.0, 16.0))
        paint = line & ~worn
        luma = 1.0 + 0.02 * fields.grain[paint] + 0.025 * fields.mid[paint] + 0.02 * fields.large[paint]
        canvas.paint(paint, luma[:, None] * colour.astype(np.float32)[None, :], class_id)


def _paint_sealing(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, paved: np.ndarray,
    fields: texture.GroundFields,
) -> None:
    """Paints crack-sealing strips: dark glossy meandering polylines 2–5 cm wide, some branching."""
    area_m2 = float(paved[:: plan.sample_step, :: plan.sample_step].sum()) * plan.sample_step**2
    area_m2 /= plan.px_per_m**2
    n_strips = int(rng.integers(3, 6)) + int(area_m2 / 15)
    frame_size = min(canvas.shape)
    for start in sample_points(rng, plan, plan.section.asphalt, n_strips):
        kind = rng.choice(3, p=[0.55, 0.3, 0.15])
        heading = plan.axis.angle + (np.pi / 2 if kind == 0 else 0.0 if kind == 1 else rng.uniform(0, np.pi))
        heading += np.pi * int(rng.integers(0, 2))
        length = min(_metres(plan, 0.8, 3.0, rng), 0.8 * frame_size)
        path = meander(rng, tuple(start), heading, length, step=0.02 * plan.px_per_m)
        thickness = int(round(_metres(plan, 0.02, 0.05, rng)))
        paths = [(path, thickness)]
        if rng.random() < 0.4:
            fork = int(rng.integers(1, len(path) - 1))
            branch = meander(
                rng, tuple(path[fork]), heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.2),
                length * rng.uniform(0.3, 0.6), step=0.02 * plan.px_per_m,
            )
            paths.append((branch, max(2, int(thickness * 0.8))))
        _paint_strip(rng, canvas, paved, fields, paths)


def _paint_strip(
    rng: np.random.Generator, canvas: Canvas, paved: np.ndarray, fields: texture.GroundFields,
    paths: list[tuple[np.ndarray, int]],
) -> None:
    """Paints one sealing strip (its main path and branches) inside its bounding window."""
    corners = np.vstack([path for path, _ in paths])
    pad = max(thickness for _, thickness in paths) + 2
    (x0, y0), (x1, y1) = corners.min(axis=0) - pad, corners.max(axis=0) + pad
    found = canvas.window(x0, y0, x1, y1)
    if found is None:
        return
    view, ox, oy = found
    offset = np.array([ox, oy], dtype=np.float64)
    mask = np.zeros(view.shape, dtype=bool)
    for path, thickness in paths:
        mask |= polyline_mask(view.shape, path - offset, thickness)
    rows, cols = slice(oy, oy + view.shape[0]), slice(ox, ox + view.shape[1])
    mask &= paved[rows, cols]
    local = fields.crop(oy, oy + view.shape[0], ox, ox + view.shape[1])
    base = rng.uniform(18.0, 32.0)
    colours = (base + 1.2 * local.grain[mask] + 1.5 * local.mid[mask])[:, None] * np.ones(3, np.float32)
    view.paint(mask, colours, CRACK_SEALING)
    # Gloss: a thinner, lighter streak along the middle of the sealant.
    main, thickness = paths[0]
    gloss = polyline_mask(view.shape, main - offset, max(1, thickness // 3)) & mask
    view.image[gloss] += np.float32(rng.uniform(10.0, 24.0))


def _soft_band(v: np.ndarray, lo: float, hi: float, softness: float) -> np.ndarray:
    """Returns float32 in [0, 1]: 1 inside [lo, hi], ramping to 0 over ``softness`` px outside."""
    inside = np.minimum(v - np.float32(lo), np.float32(hi) - v) / np.float32(2 * softness) + 0.5
    return np.clip(inside, 0.0, 1.0).astype(np.float32)


def _paint_guardrails(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, u: np.ndarray, v: np.ndarray,
    fields: texture.GroundFields,
) -> None:
    """Paints both W-beam guardrails with their posts and casts their shadows."""
    section = plan.section
    # Galvanised steel: blue-grey, clearly tinted next to neutral asphalt and white paint.
    base = rng.uniform([145, 160, 188], [165, 180, 208]).astype(np.float32)
    sun_v = np.sin(plan.sun_angle - plan.axis.angle)  # sun direction across the road
    for beam, posts in ((section.beam, section.posts), (section.outer_beam, section.outer_posts)):
        beam_mask = band_mask(v, *beam)
        post_mask = band_mask(v, *posts)
        post_mask[post_mask] = np.mod(u[post_mask], np.float32(section.post_spacing)) < section.post_length
        width = beam[1] - beam[0]
        t = (v[beam_mask] - beam[0]) / np.float32(width)
        colours = texture.guardrail_beam(t, fields.grain[beam_mask], base)
        canvas.paint(post_mask, rng.uniform(80, 100) + 4 * fields.grain[post_mask][:, None], GUARDRAIL)
        canvas.paint(beam_mask, colours, GUARDRAIL)
        splice = beam_mask.copy()
        splice[beam_mask] = np.mod(u[beam_mask], np.float32(2 * section.post_spacing)) < 0.03 * plan.px_per_m
        canvas.image[splice] *= np.float32(0.8)
        # The beam stands ~0.7 m high: its shadow falls beside it, away from the sun.
        reach = width * rng.uniform(0.5, 1.0)
        lo, hi = (beam[1], beam[1] + reach) if sun_v < 0 else (beam[0] - reach, beam[0])
        darkness = np.float32(rng.uniform(0.25, 0.4))
        near = band_mask(v, lo - 8.0, hi + 8.0) & ~(beam_mask | post_mask)
        canvas.shade[near] = np.minimum(canvas.shade[near], 1.0 - darkness * _soft_band(v[near], lo, hi, 4.0))


def _paint_cones(
    rng: np.random.Generator, canvas: Canvas, plan: FramePlan, fields: texture.GroundFields,
) -> None:
    """Paints a row of traffic cones in lane 1; the outer two may be cut by the frame border."""
    section = plan.section
    lane_v = section.lane1[0] + (section.lane1[1] - section.lane1[0]) * rng.uniform(0.3, 0.7)
    extent = u_extent(plan, lane_v, 2.0 * plan.sample_step)
    if extent is None:
        return
    n_cones = int(rng.integers(3, 6)) + int(plan.height * plan.width / plan.px_per_m**2 / 40)
    spacing = min(_metres(plan, 0.9, 2.0, rng), (extent[1] - extent[0]) / (n_cones + 0.5))
    first = extent[0] + rng.uniform(0.2, 0.7) * spacing
    orange = rng.uniform([225, 80, 15], [250, 120, 40]).astype(np.float32)
    for k in range(-1, n_cones + 1):
        x, y = plan.axis.to_xy(first + k * spacing, lane_v + rng.normal(0, 0.08 * plan.px_per_m))
        radius = _metres(plan, 0.15, 0.2, rng)
        paint_cone(rng, canvas, fields, (float(x), float(y)), radius, plan.sun_angle, orange)


def paint_cone(
    rng: np.random.Generator, canvas: Canvas, fields: texture.GroundFields,
    centre: tuple[float, float], radius: float, sun_angle: float, orange: np.ndarray,
) -> np.ndarray | None:
    """Paints one traffic cone seen from above and its shadow; returns its (h, w) bool mask
    in the window it was painted in, or None when it lies outside the frame.

    The cone is an orange disc of ``radius`` px with a white reflective ring (0.56-0.68 of
    the radius) and a lighter tip, on a dark square base 1.9 radii wide; disc and base are
    both labelled traffic_cone.
    """
    sun = np.array([np.cos(sun_angle), np.sin(sun_angle)])
    offset = sun * radius * rng.uniform(0.8, 1.6)
    reach = 2.2 * radius + np.abs(offset).max()
    found = canvas.window(centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach)
    if found is None:
        return None
    view, ox, oy = found
    local = fields.crop(oy, oy + view.shape[0], ox, ox + view.shape[1])
    cx, cy = centre[0] - ox, centre[1] - oy
    body = disc_mask(view.shape, (cx, cy), radius)
    base = polygon_mask(view.shape, rotated_rect((cx, cy), (1.9 * radius, 1.9 * radius), rng.uniform(0, np.pi)))
    cone = body | base
    if not cone.any():
        return None
    shadow = disc_mask(view.shape, (cx - offset[0], cy - offset[1]), radius * 0.9).astype(np.float32)
    view.cast_shadow(cv2.GaussianBlur(shadow, (0, 0), max(1.0, 0.15 * radius)) * np.float32(0.45), exclude=cone)
    rim = base & ~body
    view.paint(rim, rng.uniform(28, 45) + 3 * local.grain[rim][:, None], TRAFFIC_CONE)
    ys, xs = np.nonzero(body)
    dist = np.hypot(xs - cx, ys - cy) / radius
    lit = np.cos(np.arctan2(ys - cy, xs - cx) - sun_angle)
    shading = (1.04 - 0.22 * dist + 0.1 * lit * dist).astype(np.float32)
    view.paint(body, shading[:, None] * orange[None, :], TRAFFIC_CONE)
    band = ring_mask(view.shape, (cx, cy), 0.56 * radius, 0.68 * radius)
    view.image[band] = np.float32(rng.uniform(225, 240)) + 3 * local.grain[band][:, None]
    view.image[disc_mask(view.shape, (cx, cy), 0.13 * radius)] = np.minimum(orange * 1.12, 255.0)
    return cone


def _cast_scene_shadows(rng: np.random.Generator, canvas: Canvas, plan: FramePlan) -> None:
    """Casts soft shadows of off-frame objects: big blobs (trees, vehicles) and thin
    elongated ones (poles, cables) that look like crack sealing but stay labelled as before."""
    height, width = canvas.shape
    if rng.random() < 0.6:
        blob = texture.value_noise(rng, height, width, 1.2 * plan.px_per_m)
        # A smooth step on the smooth field gives soft edges without a full-frame blur.
        edge = np.float32(rng.uniform(0.9, 1.6))
        ramp = np.clip((blob - edge) * np.float32(6.0) + 0.5, 0.0, 1.0)
        canvas.cast_shadow(ramp * np.float32(rng.uniform(0.3, 0.45)))
    n_thin = int(rng.integers(1, 4)) + int(height * width / plan.px_per_m**2 / 30)
    for start in sample_points(rng, plan, plan.section.asphalt, n_thin):
        path = meander(rng, tuple(start), rng.uniform(0, np.pi), _metres(plan, 1.0, 4.0, rng),
                       0.1 * plan.px_per_m, 0.02)
        thickness = int(round(_metres(plan, 0.02, 0.08, rng)))
        sigma = max(1.0, 0.008 * plan.px_per_m * rng.uniform(0.5, 1.5))
        pad = thickness + 3 * sigma + 2
        (x0, y0), (x1, y1) = path.min(axis=0) - pad, path.max(axis=0) + pad
        darkness = np.float32(rng.uniform(0.3, 0.45))
        found = canvas.window(x0, y0, x1, y1)
        if found is None:
            continue
        view, ox, oy = found
        line = polyline_mask(view.shape, path - np.array([ox, oy]), thickness).astype(np.float32)
        view.cast_shadow(cv2.GaussianBlur(line, (0, 0), sigma) * darkness)


def render_frame(
    rng: np.random.Generator, width: int, height: int, gsd_cm: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((H, W, 3) uint8 RGB frame, (H, W) uint8 class ids) of a random road scene.

    Args:
        rng: the only source of randomness; the same generator state gives the same frame.
        width: frame width in pixels.
        height: frame height in pixels.
        gsd_cm: ground sampling distance in cm per pixel (paper: 0.25 at 40 m altitude).

    Raises:
        ValueError: non-positive size or GSD.
    """
    if width <= 0 or height <= 0 or gsd_cm <= 0:
        raise ValueError(f"frame size and GSD must be positive, got {width}x{height} at {gsd_cm} cm/px")
    plan = plan_frame(rng, width, height, 100.0 / gsd_cm)
    canvas = Canvas.blank(height, width)
    u, v = plan.axis.coords(height, width)
    fields = texture.GroundFields.make(rng, height, width, plan.px_per_m)
    paved, tone, tint = _paint_ground(rng, canvas, plan, u, v, fields)
    _paint_patches(rng, canvas, plan, paved, fields, tone, tint)
    _paint_markings(rng, canvas, plan, u, v, fields)
    _paint_sealing(rng, canvas, plan, paved, fields)
    _paint_guardrails(rng, canvas, plan, u, v, fields)
    _paint_cones(rng, canvas, plan, fields)
    _cast_scene_shadows(rng, canvas, plan)
    canvas.image *= canvas.shade[..., None]
    return texture.apply_lighting(rng, canvas.image), canvas.label


def render_tile(rng: np.random.Generator, size: int = 800, gsd_cm: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((size, size, 3) uint8, (size, size) uint8): a square frame, for tests."""
    return render_frame(rng, size, size, gsd_cm)
