"""Survey totals of two overlapping georeferenced frames count the shared ground once; per-frame figures stay."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.export_data import CLASSES, CONE, ROAD, SEALING, WHITE, write_prediction

pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
rasterio = pytest.importorskip("rasterio")

GSD_M = 0.005
ORIGIN = (500000.0, 5400000.0)
OVERLAP = slice(800, 1200)  # ground columns both frames see (2 m of 6 m frames)


def world() -> np.ndarray:
    """Returns the ground: (400, 2000) labels, a 9 m sealing line across both frames, a white square and a cone
    in the overlap, a cone in each frame alone."""
    labels = np.full((400, 2000), ROAD, np.uint8)
    labels[100:108, 100:1900] = SEALING
    labels[200:300, 900:1000] = WHITE
    for x in (200, 1000, 1800):
        labels[320:360, x : x + 40] = CONE
    return labels


def overlapping_geotiffs(tmp_path: Path) -> Path:
    """Writes the two frames as label GeoTIFFs (frame B starts 800 px east of A) and a prediction folder whose
    records carry their CRS and transform as `roadparse predict` writes them; returns the folder."""
    from pyproj import CRS

    from roadparse.io.geo import read_geo_info

    ground, geo = world(), {}
    for name, x0 in (("a", 0), ("b", 800)):
        path = tmp_path / f"{name}.tif"
        transform = rasterio.transform.Affine(GSD_M, 0.0, ORIGIN[0] + x0 * GSD_M, 0.0, -GSD_M, ORIGIN[1])
        with rasterio.open(path, "w", driver="GTiff", width=1200, height=400, count=1, dtype="uint8",
                           crs=CRS.from_epsg(32633).to_wkt(), transform=transform) as target:
            target.write(ground[:, x0 : x0 + 1200], 1)
        info = read_geo_info(path)
        assert info is not None
        geo[name] = {"crs": info.crs, "transform": list(info.transform)}
    frames = {name: ground[:, x0 : x0 + 1200].copy() for name, x0 in (("a", 0), ("b", 800))}
    return write_prediction(tmp_path / "pred", frames, geo=geo, gsd_cm=100 * GSD_M)


def test_overlapping_georeferenced_frames_count_ground_once(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_vectors

    result = export_vectors(overlapping_geotiffs(tmp_path), tmp_path / "out" / "s.gpkg", "gpkg")
    survey, frames = result["survey"], result["measurements"]
    counts = np.bincount(world().ravel(), minlength=len(CLASSES)) * GSD_M**2
    for name in ("road", "white_marking", "crack_sealing", "traffic_cone"):
        assert survey[f"area_m2.{name}"] == pytest.approx(counts[CLASSES.index(name)], rel=1e-6), name
    assert survey["crack_sealing_m"] == pytest.approx(9.0, rel=0.01)
    assert survey["traffic_cone_count"] == 3
    # per-frame figures stay, and they count the overlap in both frames
    assert frames["a"]["traffic_cone_count"] == frames["b"]["traffic_cone_count"] == 2
    assert frames["a"]["area_m2.white_marking"] == frames["b"]["area_m2.white_marking"] == pytest.approx(0.25)
    written = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert written["survey"] == survey and "counted once" in written["survey_totals"]
    assert "UTM zone 33N" in written["survey_totals"]


def test_frames_without_georeference_say_their_totals_may_count_overlaps_twice(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_vectors

    ground = world()
    pred = write_prediction(tmp_path / "pred", {"a": ground[:, :1200].copy(), "b": ground[:, 800:].copy()})
    export_vectors(pred, tmp_path / "out" / "s.gpkg", "gpkg")
    with (tmp_path / "out" / "measurements_survey.csv").open() as table:
        (row,) = list(csv.DictReader(table))
    assert float(row["traffic_cone_count"]) == 4  # a plain sum: the cone in the overlap twice
    assert "counted once per frame" in row["totals"]
    assert "counted once per frame" in (tmp_path / "out" / "measurements.html").read_text()


def test_ground_shares_do_not_overlap_and_cover_every_footprint() -> None:
    from roadparse.ground_cells import nearest_centre_cells as ground_shares

    footprints = [shapely.box(0, 0, 6, 2), shapely.box(4, 0, 10, 2), shapely.box(4, 0, 10, 2), shapely.box(1, 1, 3, 5)]
    centres = np.array([[3.0, 1.0], [7.0, 1.0], [7.0, 1.0], [2.0, 3.0]])
    shares = ground_shares(footprints, centres)
    assert shares[2].is_empty  # the same frame twice counts once
    assert sum(s.area for s in shares) == pytest.approx(shapely.union_all(footprints).area)
    for i, first in enumerate(shares):
        assert first.is_empty or first.within(footprints[i].buffer(1e-9))
        for second in shares[i + 1 :]:
            assert first.intersection(second).area == pytest.approx(0.0, abs=1e-9)


def test_cones_seen_by_two_frames_are_one_cone() -> None:
    from roadparse.stages.export.survey import count_cones

    centres = np.array([[0.0, 0.0], [0.05, 0.02], [0.3, 0.0], [0.55, 0.0], [0.56, 0.0]])
    sizes = np.full(5, 0.2)
    # 0 and 1: two frames see one cone 5 cm apart; 2 and 3: two cones of one frame 25 cm apart stay two;
    # 4: frame 2 sees cone 3 (1 cm off)
    assert count_cones(centres, sizes, np.array([0, 1, 0, 0, 2])) == 3
    assert count_cones(centres, sizes, np.arange(5)) == 3  # 2 and 3 are further apart than a cone is wide
    assert count_cones(np.zeros((0, 2)), np.zeros(0), np.zeros(0)) == 0


def test_ground_goes_to_the_nearest_frame_that_covers_it() -> None:
    """A strip seen by frames A and B, nearest to C's centre (C does not cover it): the nearer of A and B
    answers for it, not whichever is listed first; the report's cells are the same partition."""
    from roadparse.ground_cells import nearest_centre_cells
    from roadparse.stages.report.survey import frame_cells

    a, b, c = shapely.box(0, 0, 10, 10), shapely.box(3, 0, 13, 10), shapely.box(4, 10, 6, 14)
    centres = np.array([[5.0, 5.0], [8.0, 5.0], [5.0, 12.0]])
    cells = nearest_centre_cells([a, b, c], centres)
    strip = shapely.box(7, 9.5, 8, 10)  # nearer C's centre than A's or B's, covered by A and B; nearer B than A
    assert all(math.dist(p, (5, 12)) < math.dist(p, (8, 5)) < math.dist(p, (5, 5)) for p in strip.exterior.coords)
    assert cells[1].covers(strip) and cells[0].intersection(strip).area == pytest.approx(0.0, abs=1e-9)
    assert sum(cell.area for cell in cells) == pytest.approx(shapely.union_all([a, b, c]).area)
    report = frame_cells({"a": a, "b": b, "c": c})  # the footprints' centroids are the centres above
    for name, cell in zip("abc", cells, strict=True):
        assert report[name].symmetric_difference(cell).area == pytest.approx(0.0, abs=1e-9)
