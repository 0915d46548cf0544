"""Where things go in a synthetic frame: the road axis and its cross-section, in pixels.

The cross-section, from the median outwards: vegetation | guardrail posts | W-beam |
gravel | asphalt shoulder | yellow edge line | lane 1 | white dashed lane line | lane 2 |
white solid edge line | hard shoulder | gravel | W-beam | posts | vegetation. Real sizes
(metres) are drawn from the ranges below; the frame is placed across the road so that it
always sees the median guardrail, the yellow line and the dashed white line. Frames too
narrow for a real 3.5 m lane (under ~6 m across the road) get a narrower lane 1, and
frames under ~3 m across get the whole cross-section scaled down so that every class
stays in view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadparse.synth.primitives import RoadAxis


@dataclass(frozen=True)
class CrossSection:
    """Band edges across the road, (v0, v1) in pixels of ``RoadAxis`` v; v grows away from
    the median guardrail. ``dash``/``gap``/``phase`` (pixels along u) shape the dashed line."""

    posts: tuple[float, float]
    beam: tuple[float, float]
    gravel: tuple[float, float]
    asphalt: tuple[float, float]
    yellow: tuple[float, float]
    lane1: tuple[float, float]
    dashed: tuple[float, float]
    edge_line: tuple[float, float]
    outer_gravel: tuple[float, float]
    outer_beam: tuple[float, float]
    outer_posts: tuple[float, float]
    dash: float
    gap: float
    phase: float
    post_spacing: float
    post_length: float


@dataclass(frozen=True)
class FramePlan:
    """The geometry of one frame: size, scale, road axis, cross-section and sun direction."""

    height: int
    width: int
    px_per_m: float
    axis: RoadAxis
    section: CrossSection
    sun_angle: float
    v_sample: np.ndarray
    u_sample: np.ndarray
    sample_step: int


def _road_axis(rng: np.random.Generator, height: int, width: int, px_per_m: float) -> RoadAxis:
    """Returns a road roughly along the frame's long side, either way round, gently curved.

    Survey flights follow the road, so the road stays within 10 degrees of the long side.
    """
    angle = np.deg2rad(rng.uniform(-10.0, 10.0)) + (0.0 if width >= height else np.pi / 2)
    angle += np.pi * int(rng.integers(0, 2))
    half_length = 0.5 * max(height, width)
    # At most ~0.12 m of lateral drift between the frame centre and its ends.
    curvature = rng.uniform(-1.0, 1.0) * 0.12 * px_per_m / max(half_length, 1.0) ** 2
    return RoadAxis(origin=(width / 2.0, height / 2.0), angle=float(angle), curvature=curvature)


def plan_frame(rng: np.random.Generator, width: int, height: int, px_per_m: float) -> FramePlan:
    """Returns a random but complete frame layout at ``px_per_m`` pixels per metre."""
    axis = _road_axis(rng, height, width, px_per_m)
    step = max(1, min(height, width) // 200)
    u_sample, v_sample = axis.coords(height, width, step)
    flat_v = v_sample.ravel()
    start = float(np.quantile(flat_v, rng.uniform(0.05, 0.12)))
    end = float(np.quantile(flat_v, 1.0 - rng.uniform(0.08, 0.16)))  # some of lane 2 beyond the dashes
    metres = {
        "post": rng.uniform(0.10, 0.16),
        "beam": rng.uniform(0.30, 0.50),
        "gravel": rng.uniform(0.2, 0.5),
        "shoulder": rng.uniform(0.35, 0.8),
        "yellow": rng.uniform(0.15, 0.20),
        "white": rng.uniform(0.15, 0.20),
        "lane1": rng.uniform(3.5, 3.75),
        "lane2": rng.uniform(3.5, 3.75),
        "hard_shoulder": rng.uniform(2.5, 3.0),
    }
    widths = {name: value * px_per_m for name, value in metres.items()}
    available = end - start
    fixed = sum(widths[k] for k in ("post", "beam", "gravel", "shoulder", "yellow", "white"))
    min_lane = min(1.0 * px_per_m, 0.4 * available)
    scale = 1.0
    if fixed + min_lane > available:
        scale = available / (fixed + min_lane)
        widths = {name: value * scale for name, value in widths.items()}
        widths["lane1"] = min_lane * scale
    else:
        widths["lane1"] = min(widths["lane1"], available - fixed)

    edges = [start]
    for name in ("post", "beam", "gravel", "shoulder", "yellow", "lane1", "white", "lane2",
                 "white", "hard_shoulder", "gravel", "beam", "post"):
        edges.append(edges[-1] + widths[name])
    along = float(u_sample.max() - u_sample.min())
    # Highways paint 6 m dashes with 9 m gaps; a frame a few metres long would often miss
    # them, so dashes shrink with the frame and gaps are 0.6-1x the dash.
    dash_m = min(6.0, 0.5 * along / px_per_m) * rng.uniform(0.85, 1.0)
    dash = dash_m * px_per_m
    section = CrossSection(
        posts=(edges[0], edges[1]),
        beam=(edges[1], edges[2]),
        gravel=(edges[2], edges[3]),
        asphalt=(edges[3], edges[10]),
        yellow=(edges[4], edges[5]),
        lane1=(edges[5], edges[6]),
        dashed=(edges[6], edges[7]),
        edge_line=(edges[8], edges[9]),
        outer_gravel=(edges[10], edges[11]),
        outer_beam=(edges[11], edges[12]),
        outer_posts=(edges[12], edges[13]),
        dash=dash,
        gap=dash * rng.uniform(0.6, 1.0),
        # A dash always crosses the frame centre (u = 0).
        phase=-dash * rng.uniform(0.1, 0.9),
        post_spacing=rng.uniform(1.9, 2.1) * px_per_m * scale,
        post_length=0.15 * px_per_m * scale,
    )
    return FramePlan(
        height=height,
        width=width,
        px_per_m=px_per_m,
        axis=axis,
        section=section,
        sun_angle=float(rng.uniform(0, 2 * np.pi)),
        v_sample=v_sample,
        u_sample=u_sample,
        sample_step=step,
    )


def sample_points(
    rng: np.random.Generator, plan: FramePlan, v_range: tuple[float, float], count: int
) -> np.ndarray:
    """Returns (count, 2) float64 random frame (x, y) points whose v lies in ``v_range``.

    Returns fewer (possibly none) when the band is not in the frame.
    """
    rows, cols = np.nonzero((plan.v_sample >= v_range[0]) & (plan.v_sample < v_range[1]))
    if rows.size == 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, rows.size, size=count)
    jitter = rng.uniform(0, plan.sample_step, size=(count, 2))
    return np.stack([cols[pick], rows[pick]], axis=1) * plan.sample_step + jitter


def u_extent(plan: FramePlan, v: float, tolerance: float) -> tuple[float, float] | None:
    """Returns (u_min, u_max) of the frame along the line at ``v``, or None if it misses."""
    near = np.abs(plan.v_sample - v) < tolerance
    if not near.any():
        return None
    along = plan.u_sample[near]
    return float(along.min()), float(along.max())
