"""Where things go in an urban street frame: the street's cross-section and its furniture.

Unlike the highway family (a road along the frame's long side, always the same bands),
an urban frame looks at a straight street at any angle, from anywhere across the
carriageway. Across the street (v, metres from the centre line, growing towards side B):

    sidewalk A | kerb A | [parking A] | lane A | centre line | lane B | [parking B] | kerb B | sidewalk B

with grass or flat roofs beyond the sidewalks. The centre line is either a double yellow
line or a white dashed one (then a yellow no-parking line runs along a kerb instead).
Along the street (u) there may be a zebra crosswalk with stop lines and lane arrows before
it, parked cars in the parking lanes (none near the crosswalk) and a galvanised guardrail
behind a kerb without parking or down the middle as a median barrier. Sizes are drawn in metres and turned into
pixels with ``px_per_m``, so objects keep their physical size at any GSD.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from roadparse.synth.primitives import RoadAxis


@dataclass(frozen=True)
class StreetSection:
    """Band edges across the street, (v0, v1) in pixels of ``RoadAxis`` v (side A < 0 < side B).

    ``parking_a``/``parking_b`` are None when that side has no parking lane; ``centre_lines``
    lists the painted centre line band(s); ``yellow_kerb`` is the yellow no-parking line
    along a kerb, or None.
    """

    sidewalk_a: tuple[float, float]
    kerb_a: tuple[float, float]
    carriageway: tuple[float, float]
    kerb_b: tuple[float, float]
    sidewalk_b: tuple[float, float]
    lane_a: tuple[float, float]
    lane_b: tuple[float, float]
    parking_a: tuple[float, float] | None
    parking_b: tuple[float, float] | None
    centre_lines: tuple[tuple[float, float], ...]
    centre_yellow: bool
    centre_dash: tuple[float, float]
    yellow_kerb: tuple[float, float] | None
    parking_line_width: float


@dataclass(frozen=True)
class Crosswalk:
    """A zebra crosswalk across the carriageway at ``u`` (pixels), ``width`` long along the
    street, with bars ``bar`` wide and ``gap`` apart across it and stop lines ``stop_gap``
    before it, ``stop_width`` wide."""

    u: float
    width: float
    bar: float
    gap: float
    stop_gap: float
    stop_width: float


@dataclass(frozen=True)
class Guardrail:
    """A galvanised guardrail: band (v0, v1) in pixels, from u0 to u1; its posts stand on the
    ``post_side`` (-1: towards side A, 1: towards side B, 0: hidden under the beam)."""

    band: tuple[float, float]
    u_range: tuple[float, float]
    post_side: float


@dataclass(frozen=True)
class StreetPlan:
    """The geometry of one urban frame (all lengths in pixels)."""

    height: int
    width: int
    px_per_m: float
    axis: RoadAxis
    section: StreetSection
    u_range: tuple[float, float]
    crosswalk: Crosswalk | None
    guardrail: Guardrail | None
    sun_angle: float
    sun_elevation: float

    def metres(self, rng: np.random.Generator, low: float, high: float) -> float:
        """Returns a uniform draw from [low, high) metres, in pixels."""
        return float(rng.uniform(low, high)) * self.px_per_m


@dataclass(frozen=True)
class _LineOptions:
    centre_yellow: bool
    dash: tuple[float, float]
    parking_line: float


def _cross_section(rng: np.random.Generator) -> tuple[dict[str, tuple[float, float]], _LineOptions]:
    """Returns (bands in metres, line options) of a random street cross-section."""
    lane = rng.uniform(2.9, 3.4, size=2)
    parking = [rng.random() < 0.6, rng.random() < 0.45]
    park_width = rng.uniform(2.0, 2.4, size=2)
    kerb = rng.uniform(0.15, 0.3)
    sidewalk = rng.uniform(1.8, 3.5, size=2)
    a_edge = -lane[0] - (park_width[0] if parking[0] else 0.0)
    b_edge = lane[1] + (park_width[1] if parking[1] else 0.0)
    bands = {
        "carriageway": (a_edge, b_edge),
        "kerb_a": (a_edge - kerb, a_edge),
        "kerb_b": (b_edge, b_edge + kerb),
        "sidewalk_a": (a_edge - kerb - sidewalk[0], a_edge - kerb),
        "sidewalk_b": (b_edge + kerb, b_edge + kerb + sidewalk[1]),
        "lane_a": (-lane[0], 0.0),
        "lane_b": (0.0, lane[1]),
    }
    if parking[0]:
        bands["parking_a"] = (a_edge, -lane[0])
    if parking[1]:
        bands["parking_b"] = (lane[1], b_edge)
    centre_yellow = bool(rng.random() < 0.65)
    line = rng.uniform(0.10, 0.13)
    if centre_yellow:
        half_gap = rng.uniform(0.05, 0.08)
        bands["centre_1"] = (-half_gap - line, -half_gap)
        bands["centre_2"] = (half_gap, half_gap + line)
    else:
        bands["centre_1"] = (-line / 2, line / 2)
        free = [side for side, parked in zip("ab", parking, strict=True) if not parked] or ["a"]
        side = free[int(rng.integers(0, len(free)))]
        edge = bands["carriageway"][0] if side == "a" else bands["carriageway"][1]
        inset = rng.uniform(0.15, 0.3)
        width = rng.uniform(0.10, 0.15)
        bands["yellow_kerb"] = (edge + inset, edge + inset + width) if side == "a" else (
            edge - inset - width, edge - inset)
    dash = (float(rng.uniform(2.5, 3.5)), float(rng.uniform(3.0, 6.0)))
    return bands, _LineOptions(centre_yellow, dash, float(rng.uniform(0.10, 0.12)))


def _frame_u_range(axis: RoadAxis, width: int, height: int) -> tuple[float, float]:
    """Returns (u_min, u_max): how far along the street the frame's corners reach, in pixels."""
    corners_x = np.array([0.0, width, 0.0, width]) - axis.origin[0]
    corners_y = np.array([0.0, 0.0, height, height]) - axis.origin[1]
    u = corners_x * np.cos(axis.angle) + corners_y * np.sin(axis.angle)
    return float(u.min()), float(u.max())


def plan_street(rng: np.random.Generator, width: int, height: int, px_per_m: float) -> StreetPlan:
    """Returns a random urban street frame layout at ``px_per_m`` pixels per metre."""
    bands_m, options = _cross_section(rng)
    angle = float(rng.uniform(0.0, np.pi))
    # The frame centre sits somewhere over the carriageway, not always over the centre line.
    c0, c1 = bands_m["carriageway"]
    centre_v = rng.uniform(0.75 * c0, 0.75 * c1) * px_per_m
    # v(frame centre) = centre_v: shift the street's origin across the street by -centre_v.
    cx, cy = width / 2.0, height / 2.0
    origin = (cx + centre_v * np.sin(angle), cy - centre_v * np.cos(angle))
    axis = RoadAxis(origin=(float(origin[0]), float(origin[1])), angle=angle)
    u_range = _frame_u_range(axis, width, height)

    def px(name: str) -> tuple[float, float]:
        lo, hi = bands_m[name]
        return lo * px_per_m, hi * px_per_m

    centre = (px("centre_1"),) + ((px("centre_2"),) if "centre_2" in bands_m else ())
    dash, gap = options.dash
    section = StreetSection(
        sidewalk_a=px("sidewalk_a"), kerb_a=px("kerb_a"), carriageway=px("carriageway"),
        kerb_b=px("kerb_b"), sidewalk_b=px("sidewalk_b"), lane_a=px("lane_a"), lane_b=px("lane_b"),
        parking_a=px("parking_a") if "parking_a" in bands_m else None,
        parking_b=px("parking_b") if "parking_b" in bands_m else None,
        centre_lines=centre, centre_yellow=options.centre_yellow,
        centre_dash=(dash * px_per_m, gap * px_per_m),
        yellow_kerb=px("yellow_kerb") if "yellow_kerb" in bands_m else None,
        parking_line_width=options.parking_line * px_per_m,
    )
    crosswalk = _plan_crosswalk(rng, u_range, px_per_m)
    guardrail, section = _plan_guardrail(rng, section, u_range, px_per_m)
    return StreetPlan(
        height=height, width=width, px_per_m=px_per_m, axis=axis, section=section, u_range=u_range,
        crosswalk=crosswalk, guardrail=guardrail,
        sun_angle=float(rng.uniform(0.0, 2 * np.pi)), sun_elevation=float(rng.uniform(25.0, 60.0)),
    )


def _plan_crosswalk(rng: np.random.Generator, u_range: tuple[float, float], px_per_m: float) -> Crosswalk | None:
    """Returns a zebra crosswalk in the middle 60 % of the frame's extent along the street (70 %
    of frames), or None."""
    if rng.random() >= 0.7:
        return None
    u0, u1 = u_range
    return Crosswalk(
        u=float(rng.uniform(u0 + 0.2 * (u1 - u0), u1 - 0.2 * (u1 - u0))),
        width=rng.uniform(2.5, 4.0) * px_per_m,
        bar=rng.uniform(0.4, 0.6) * px_per_m,
        gap=rng.uniform(0.4, 0.6) * px_per_m,
        stop_gap=rng.uniform(1.0, 2.5) * px_per_m,
        stop_width=rng.uniform(0.3, 0.5) * px_per_m,
    )


def _plan_guardrail(
    rng: np.random.Generator, section: StreetSection, u_range: tuple[float, float], px_per_m: float
) -> tuple[Guardrail | None, StreetSection]:
    """Returns (guardrail or None, the section with its centre lines moved aside for a median rail).

    Most frames (85 %) have one: right behind a kerb without parking, or down the middle of
    the street between two yellow lines (a median barrier); posts show only behind a kerb.
    """
    if rng.random() >= 0.85:
        return None, section
    sides = [side for side, parking in (("a", section.parking_a), ("b", section.parking_b)) if parking is None]
    width = rng.uniform(0.4, 0.6) * px_per_m
    u0, u1 = u_range
    start = u0 - 1.0 if rng.random() < 0.8 else u0 + rng.uniform(0.1, 0.4) * (u1 - u0)
    if not sides or rng.random() < 0.6:
        line = rng.uniform(0.10, 0.13) * px_per_m
        inner = width / 2 + rng.uniform(0.2, 0.35) * px_per_m
        section = replace(section, centre_lines=((-inner - line, -inner), (inner, inner + line)), centre_yellow=True)
        return Guardrail(band=(-width / 2, width / 2), u_range=(start, u1 + 1.0), post_side=0.0), section
    side = sides[int(rng.integers(0, len(sides)))]
    setback = rng.uniform(0.05, 0.3) * px_per_m
    if side == "a":
        edge = section.kerb_a[0] - setback
        return Guardrail(band=(edge - width, edge), u_range=(start, u1 + 1.0), post_side=-1.0), section
    edge = section.kerb_b[1] + setback
    return Guardrail(band=(edge, edge + width), u_range=(start, u1 + 1.0), post_side=1.0), section
