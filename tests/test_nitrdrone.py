"""Two real drone frames (NITRDrone samples, ../shared/data/nitrdrone) through the offline profile to pseudo-labels.

A check on real pixels, not tuning data: the run is ``bench/nitrdrone.py``'s (the offline profile
as a new user gets it, the merge map suggested from the frames' own labels); the test asks for a
road the pseudo-labels find on both frames (measured: 89.7 / 81.2 % road IoU). Slow (about 2 minutes on
an idle 2-core machine, 20 under load);
``python bench/nitrdrone.py`` runs the same and prints road IoU and seconds per megapixel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "nitrdrone.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_nitrdrone", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_offline_profile_finds_the_road_on_real_frames(tmp_path: Path) -> None:
    bench = _bench()
    if not (bench.DATA / "images").is_dir():
        pytest.skip(f"{bench.DATA}: the NITRDrone sample frames are not here")
    figures = bench.run(bench.DATA, tmp_path)
    assert set(figures["frames"]) == {"NITR_FR_1", "NITR_AC_JAN26_30"}
    for frame, iou in figures["frames"].items():
        assert iou["road"] is not None and iou["road"] >= 60.0, f"{frame}: road IoU {iou['road']}"
    assert figures["masks"] > 0 and figures["seconds_per_megapixel"] > 0
