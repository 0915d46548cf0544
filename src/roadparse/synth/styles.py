"""The synthetic families (``roadparse synth --style``): one renderer and default GSD each.

``highway`` is the family the demo profile was tuned on; ``urban`` is rendered by other
code (its own layout, palette, objects and camera) so that settings chosen on one family
can be scored on data they were never chosen on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SynthStyle:
    """A family of synthetic frames: how to render one and at which GSD by default."""

    name: str
    render: Callable[[np.random.Generator, int, int, float], tuple[np.ndarray, np.ndarray]]
    default_gsd_cm: float
    summary: str


def _styles() -> dict[str, SynthStyle]:
    from roadparse.synth.scene import render_frame
    from roadparse.synth.urban import DEFAULT_GSD_CM, render_urban_frame

    return {
        "highway": SynthStyle("highway", render_frame, 0.25, "a divided highway with W-beam guardrails"),
        "urban": SynthStyle("urban", render_urban_frame, DEFAULT_GSD_CM,
                            "city streets with crosswalks, parked cars, kerbs and sidewalks"),
    }


STYLE_NAMES = ("highway", "urban")
"""Valid ``--style`` values; the first is the default."""


def get_style(name: str) -> SynthStyle:
    """Returns the style called ``name``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    styles = _styles()
    if name not in styles:
        raise ValueError(f"unknown synth style {name!r}: choose one of {', '.join(STYLE_NAMES)}")
    return styles[name]
