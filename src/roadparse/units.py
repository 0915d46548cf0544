"""Pure conversions between ground units and pixels at a ground sampling distance (GSD, cm per pixel)."""

from __future__ import annotations


def length_px(length_cm: float, gsd_cm: float) -> float:
    """Returns a ground length in pixels: ``length_cm / gsd_cm`` (2 m at 0.25 cm/px = 800 px)."""
    if gsd_cm <= 0:
        raise ValueError(f"GSD must be positive, got {gsd_cm} cm/px")
    return length_cm / gsd_cm


def area_px(area_cm2: float, gsd_cm: float) -> float:
    """Returns a ground area in pixels: ``area_cm2 / gsd_cm²`` (187.5 cm² at 0.25 cm/px = 3000 px)."""
    return length_px(length_px(area_cm2, gsd_cm), gsd_cm)


def area_cm2(pixels: float, gsd_cm: float) -> float:
    """Returns the ground area in cm² of ``pixels`` pixels at ``gsd_cm`` (the inverse of :func:`area_px`)."""
    if gsd_cm <= 0:
        raise ValueError(f"GSD must be positive, got {gsd_cm} cm/px")
    return pixels * gsd_cm * gsd_cm
