"""A synthetic road corridor along a known centreline, rendered twice: survey A and survey B with planted changes.

The corridor is one two-lane road on a gentle left-hand arc in a projected CRS
(:data:`CRS_EPSG`, metres). It is painted once as a north-up "world" raster at the survey's
GSD, in road coordinates (chainage ``s`` along the centreline, offset ``d`` to its left),
and drone frames are windows of that raster, so overlapping frames see the same ground
pixel for pixel. Every marking has a known worn share: its worn pixels are the top
``wear`` quantile of a blobby noise field inside its envelope (the rectangle of a dash,
the band of a solid line), so the share is exact; more wear in survey B raises the
threshold on the same field, so B's worn paint contains A's.

Survey B differs from A only where :func:`plan_corridor` plants a change: more wear on
chosen markings, new crack-sealing lines, one dash removed; its frames are flown at other
positions and stop short of the end, so the last interval is not comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from roadparse.synth import texture
from roadparse.synth.primitives import meander, polyline_mask
from roadparse.synth.scene import (
    CRACK_SEALING,
    OTHER,
    ROAD,
    WHITE_MARKING,
    YELLOW_MARKING,
    Canvas,
    paint_cone,
)

CRS_EPSG = 32633
"""WGS 84 / UTM zone 33N: the corridor's projected CRS."""
ROAD_HALF_WIDTH_M = 4.0
"""Asphalt from 4 m right to 4 m left of the centreline (two 3.5 m lanes and their edge strips)."""
LINE_WIDTH_M = 0.15
SECTION_M = 10.0
"""Solid lines are painted in sections this long, each with its own wear (aligned with 10 m intervals)."""
DASH_M, GAP_M = 3.0, 3.0
SEALING_PX = 3
"""Crack-sealing strips are this many pixels wide."""

Survey = Literal["a", "b"]


@dataclass(frozen=True)
class Centreline:
    """A circular arc (``radius`` > 0 turns left) from ``start`` heading ``heading`` radians from +x (east)."""

    start: tuple[float, float]
    heading: float
    radius: float
    length: float

    @property
    def _centre(self) -> tuple[float, float]:
        return (self.start[0] - self.radius * math.sin(self.heading), self.start[1] + self.radius * math.cos(self.heading))

    def point(self, s: np.ndarray | float, d: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Returns map (x, y) of chainage ``s`` and offset ``d`` (metres, left of the line positive)."""
        cx, cy = self._centre
        phi = self.heading - math.pi / 2 + np.asarray(s, dtype=np.float64) / self.radius
        r = self.radius - np.asarray(d, dtype=np.float64)
        return cx + r * np.cos(phi), cy + r * np.sin(phi)

    def chainage(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (s, d) of map points (inverse of :meth:`point`)."""
        cx, cy = self._centre
        dx, dy = np.asarray(x, dtype=np.float64) - cx, np.asarray(y, dtype=np.float64) - cy
        phi = np.arctan2(dy, dx) - (self.heading - math.pi / 2)
        phi = (phi + math.pi) % (2 * math.pi) - math.pi
        return phi * self.radius, self.radius - np.hypot(dx, dy)

    def coords(self, step_m: float = 0.5) -> np.ndarray:
        """Returns (N, 2) float64 map vertices every ``step_m`` metres (the centreline a user would digitise)."""
        s = np.linspace(0.0, self.length, max(2, int(math.ceil(self.length / step_m)) + 1))
        return np.stack(self.point(s), axis=1)


@dataclass(frozen=True)
class Marking:
    """One marking: a dash, or a section of a solid line, as a band in road coordinates."""

    id: str
    class_name: str
    kind: Literal["dash", "solid"]
    s0: float
    s1: float
    d0: float
    d1: float
    wear_a: float
    wear_b: float
    """planted worn share in survey B (= wear_a where nothing changes)"""
    removed_in_b: bool = False


@dataclass(frozen=True)
class SealingLine:
    """A crack-sealing strip: (N, 2) map vertices, and whether survey A has it (else it is new in B)."""

    id: str
    points: np.ndarray
    in_a: bool


@dataclass
class CorridorPlan:
    """Everything both surveys are rendered from."""

    centreline: Centreline
    gsd_m: float
    transform: tuple[float, float, float, float, float, float]
    """world pixel (col, row) → map (x, y)"""
    shape: tuple[int, int]
    """world (height, width) in pixels"""
    markings: list[Marking]
    sealing: list[SealingLine]
    cones: list[tuple[float, float]]
    """(s, d) of each cone, in both surveys"""
    frames: dict[str, list[float]] = field(default_factory=dict)
    """survey → chainage of each frame's centre"""
    frame_m: float = 12.0


def plan_corridor(
    rng: np.random.Generator, length_m: float = 40.0, gsd_cm: float = 2.5, frame_m: float = 12.0, step_m: float = 5.0,
) -> CorridorPlan:
    """Returns a corridor ``length_m`` long with its markings, sealing, cones, frames and planted changes.

    Changes planted in survey B: the white edge line's section 10-20 m and one dash in 20-30 m
    get 20-30 points more wear, the dash starting nearest 13 m is removed, and two sealing
    lines are added (in 0-10 m and 20-30 m). B's frames are offset by half a step and end
    about 10 m before the end of the corridor.

    Raises:
        ValueError: a corridor shorter than 30 m (the planted changes need three 10 m intervals).
    """
    if length_m < 30.0:
        raise ValueError(f"a corridor must be at least 30 m long to hold the planted changes, got {length_m:g} m")
    gsd = gsd_cm / 100.0
    line = Centreline((500_000.0, 5_000_000.0), math.radians(20.0), 300.0, length_m)
    margin = frame_m
    s = np.linspace(-margin, length_m + margin, 200)
    xs, ys = zip(*(line.point(s, d) for d in (-margin, margin)), strict=True)
    x0, x1 = float(np.min(xs)), float(np.max(xs))
    y0, y1 = float(np.min(ys)), float(np.max(ys))
    width, height = int(math.ceil((x1 - x0) / gsd)), int(math.ceil((y1 - y0) / gsd))
    transform = (gsd, 0.0, math.floor(x0), 0.0, -gsd, math.ceil(y1))
    wear = lambda: round(float(rng.uniform(0.05, 0.4)), 3)  # noqa: E731
    half = LINE_WIDTH_M / 2
    markings: list[Marking] = []
    more = lambda w: round(min(0.9, w + float(rng.uniform(0.2, 0.3))), 3)  # noqa: E731
    removed_start = min(np.arange(1.0, length_m - DASH_M, DASH_M + GAP_M), key=lambda v: abs(v - 13.0))
    worn_dash_start = min(np.arange(1.0, length_m - DASH_M, DASH_M + GAP_M), key=lambda v: abs(v - 25.0))
    for k, start in enumerate(np.arange(1.0, length_m - DASH_M, DASH_M + GAP_M)):
        w = wear()
        markings.append(Marking(f"dash-{k}", "white_marking", "dash", float(start), float(start + DASH_M), -half, half, w,
                                more(w) if start == worn_dash_start else w, removed_in_b=bool(start == removed_start)))
    for name, class_name, d_mid in (("edge-right", "white_marking", -3.675), ("edge-left", "yellow_marking", 3.675)):
        for k, start in enumerate(np.arange(0.0, length_m, SECTION_M)):
            w = wear()
            changed = name == "edge-right" and start == SECTION_M
            markings.append(Marking(f"{name}-{k}", class_name, "solid", float(start), float(min(start + SECTION_M, length_m)),
                                    d_mid - half, d_mid + half, w, more(w) if changed else w))
    new_starts = (3.0, 23.0)
    free = [float(v) for v in np.arange(1.0, length_m - 3.5, 0.5) if all(abs(v + 1.0 - n) > 4.0 for n in new_starts)]
    sealing = [_sealing_line(rng, line, f"seal-{k}", float(v), True)
               for k, v in enumerate(rng.choice(free, size=min(4, len(free)), replace=False))]
    sealing += [_sealing_line(rng, line, f"new-seal-{k}", s0, False) for k, s0 in enumerate(new_starts)]
    cones = [(float(s), 1.75) for s in np.arange(6.0, min(length_m - 2.0, 16.0), 2.0)]
    frames = {"a": [float(v) for v in np.arange(0.0, length_m + 0.01, step_m)],
              "b": [float(v) for v in np.arange(step_m / 2, length_m - 9.0, step_m)]}
    return CorridorPlan(line, gsd, transform, (height, width), markings, sealing, cones, frames, frame_m)


def _sealing_line(rng: np.random.Generator, line: Centreline, name: str, s0: float, in_a: bool) -> SealingLine:
    """Returns a sealing strip 1.5-3 m long in the right lane (d from -3.2 to -0.5 m), along or across it."""
    d0 = float(rng.uniform(-2.8, -0.9))
    along = rng.random() < 0.6
    heading = (0.0 if along else -math.pi / 2 + 0.3) + float(rng.normal(0, 0.1))
    path = meander(rng, (s0, d0), heading, float(rng.uniform(1.5, 3.0)) if along else 2.0, step=0.1, wiggle=0.08)
    path[:, 1] = np.clip(path[:, 1], -3.2, -0.5)
    return SealingLine(name, np.stack(line.point(path[:, 0], path[:, 1]), axis=1), in_a)


def world_coordinates(plan: CorridorPlan) -> tuple[np.ndarray, np.ndarray]:
    """Returns (s, d): (H, W) float32 road coordinates of every world pixel centre."""
    a, _, c, _, e, f = plan.transform
    height, width = plan.shape
    x = c + a * (np.arange(width) + 0.5)
    y = f + e * (np.arange(height) + 0.5)
    s, d = plan.centreline.chainage(x[None, :], y[:, None])
    return s.astype(np.float32), d.astype(np.float32)


def _to_pixels(plan: CorridorPlan, points: np.ndarray) -> np.ndarray:
    a, _, c, _, e, f = plan.transform
    return np.stack([(points[:, 0] - c) / a, (points[:, 1] - f) / e], axis=1)


def render_world(
    plan: CorridorPlan, survey: Survey, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """Returns ((H, W, 3) uint8 image, (H, W) uint8 labels, marking id → (envelope px, worn px)) of one survey.

    The same ``seed`` gives both surveys the same ground, noise and lighting, so they differ
    only where a change is planted.
    """
    rng = np.random.default_rng(seed)
    height, width = plan.shape
    px_per_m = 1.0 / plan.gsd_m
    s, d = world_coordinates(plan)
    canvas = Canvas.blank(height, width)
    fields = texture.GroundFields.make(rng, height, width, px_per_m)
    paved = np.abs(d) < ROAD_HALF_WIDTH_M
    canvas.paint(~paved, texture.vegetation(rng, fields, ~paved, px_per_m), OTHER)
    canvas.paint(paved, texture.asphalt(fields, paved, 100.0, np.ones(3, np.float32)), ROAD)
    for strip in plan.sealing:
        if strip.in_a or survey == "b":
            mask = polyline_mask(plan.shape, _to_pixels(plan, strip.points), SEALING_PX) & paved
            canvas.paint(mask, np.float32(25.0) + 1.5 * fields.grain[mask][:, None], CRACK_SEALING)
    noise = texture.fractal_noise(rng, height, width, (0.04 * px_per_m, 0.12 * px_per_m), (0.5, 0.8))
    shares = {}
    for marking in plan.markings:
        envelope = (s >= marking.s0) & (s < marking.s1) & (d >= marking.d0) & (d < marking.d1)
        if survey == "b" and marking.removed_in_b:
            shares[marking.id] = (int(envelope.sum()), int(envelope.sum()))
            continue
        share = marking.wear_b if survey == "b" else marking.wear_a
        threshold = np.quantile(noise[envelope], 1.0 - share) if share > 0 else np.inf
        worn = envelope & (noise > threshold)
        canvas.image[worn] += np.float32(10.0)
        paint = envelope & ~worn
        colour = np.array([235, 190, 50] if marking.class_name == "yellow_marking" else [235, 235, 228], np.float32)
        canvas.paint(paint, (1.0 + 0.02 * fields.grain[paint])[:, None] * colour, YELLOW_MARKING
                     if marking.class_name == "yellow_marking" else WHITE_MARKING)
        shares[marking.id] = (int(envelope.sum()), int(worn.sum()))
    orange = np.array([240, 100, 25], np.float32)
    for cone_s, cone_d in plan.cones:
        x, y = plan.centreline.point(cone_s, cone_d)
        col, row = _to_pixels(plan, np.array([[float(x), float(y)]]))[0]
        paint_cone(rng, canvas, fields, (float(col), float(row)), 0.18 * px_per_m, 0.8, orange)
    return texture.apply_lighting(rng, canvas.image), canvas.label, shares


def frame_windows(plan: CorridorPlan, survey: Survey) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Returns (frame name, (col0, row0, col1, row1) world window) of each frame of a survey, centred on the centreline."""
    size = int(round(plan.frame_m / plan.gsd_m))
    windows = []
    for k, s in enumerate(plan.frames[survey]):
        x, y = plan.centreline.point(s)
        col, row = _to_pixels(plan, np.array([[float(x), float(y)]]))[0]
        col0 = int(np.clip(round(col) - size // 2, 0, plan.shape[1] - size))
        row0 = int(np.clip(round(row) - size // 2, 0, plan.shape[0] - size))
        windows.append((f"{survey}_{k:03d}", (col0, row0, col0 + size, row0 + size)))
    return windows


def path_length(points: np.ndarray) -> float:
    """Returns the length of an (N, 2) polyline."""
    return float(np.hypot(*np.diff(points, axis=0).T).sum())
