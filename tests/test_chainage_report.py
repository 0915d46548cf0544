"""Chainage reports and survey comparison on two synthetic surveys of one corridor with planted changes.

The ground-truth labels stand in for predictions, in the layout `roadparse predict` writes,
and go through `roadparse export` as a user's predictions would (#32).
"""

from __future__ import annotations

import json
import math
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
pytest.importorskip("rasterio")

from roadparse.cli import main  # noqa: E402

LENGTH_M = 50.0


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("corridor")
    _invoke("synth", str(root), "--corridor", "--length-m", str(LENGTH_M), "--seed", "3")
    for survey in ("a", "b"):
        _invoke("export", str(root / survey / "truth_predictions"))
    _invoke("report", str(root / "a" / "truth_predictions"), "--centreline", str(root / "centreline.gpkg"),
            "--corridor-m", "8", "--out", str(root / "report_a"))
    _invoke("compare", str(root / "a" / "truth_predictions"), str(root / "b" / "truth_predictions"),
            "--centreline", str(root / "centreline.geojson"), "--corridor-m", "8", "--out", str(root / "compare"))
    return {"root": root, "truth": json.loads((root / "truth.json").read_text())}


def _read(path: Path, layer: str) -> tuple[dict[str, Any], list[Any], dict[str, np.ndarray]]:
    meta, _, geometry, values = pyogrio.raw.read(path, layer=layer)
    return meta, list(shapely.from_wkb(geometry)), {name: values[i] for i, name in enumerate(meta["fields"])}


def test_corridor_frames_are_georeferenced_and_agree_where_they_overlap(corridor: dict[str, Any]) -> None:
    import rasterio

    frames = sorted((corridor["root"] / "a" / "labels").glob("*.tif"))
    with rasterio.open(frames[0]) as first, rasterio.open(frames[1]) as second:
        assert first.crs.to_epsg() == 32633 and second.crs.to_epsg() == 32633
        window = first.window(*second.bounds).intersection(rasterio.windows.Window(0, 0, first.width, first.height))
        overlap = first.read(1, window=window.round_offsets().round_lengths())
        there = second.read(1, window=second.window(*first.window_bounds(window)).round_offsets().round_lengths())
    assert overlap.size > 0.3 * first.width * first.height  # frames overlap along the road
    assert np.array_equal(overlap, there)
    truth = corridor["truth"]
    assert {m["id"] for m in truth["markings"] if m["removed_in_b"]} and truth["centreline"]["length_m"] == pytest.approx(LENGTH_M, abs=1e-3)


def test_intervals_sum_to_the_centreline_and_wear_matches_the_rendered_truth(corridor: dict[str, Any]) -> None:
    truth = corridor["truth"]
    report = corridor["root"] / "report_a"
    meta, lines, fields = _read(report / "report.gpkg", "intervals")
    assert "32633" in meta["crs"] and all(line.is_valid for line in lines)
    assert sum(fields["length_m"]) == pytest.approx(truth["centreline"]["length_m"], abs=1e-3)
    assert sum(line.length for line in lines) == pytest.approx(truth["centreline"]["length_m"], rel=1e-4)
    assert {"road_id", "road_name", "from_m", "to_m", "valid_share", "white_marking_wear", "white_marking_solid_m",
            "white_marking_dashed_m", "crack_sealing_m_per_100m2", "traffic_cone_count"} <= set(fields)
    assert set(fields["road_id"]) == {"R1"} and set(fields["road_name"]) == {"Corridor road"}
    assert min(fields["valid_share"]) > 0.95
    for k, row in enumerate(truth["intervals"]):
        for name in ("white_marking", "yellow_marking"):
            assert fields[f"{name}_wear"][k] == pytest.approx(row[f"wear_a.{name}"], abs=0.05), (k, name)
    # per dash: its envelope's wear within 5 points of the rendered share
    _, _, markings = _read(report / "report.gpkg", "markings")
    dashes = [m for m in truth["markings"] if m["kind"] == "dash"]
    measured = [(s, w) for s, w, kind in zip(markings["chainage_m"], markings["wear"], markings["kind"], strict=True)
                if kind == "dash"]
    assert len(measured) == len(dashes)
    for dash in dashes:
        wear = min(measured, key=lambda item: abs(item[0] - (dash["from_m"] + dash["to_m"]) / 2))[1]
        assert wear == pytest.approx(dash["wear_a"], abs=0.05), dash["id"]
    assert fields["traffic_cone_count"].sum() == len(truth["cones"])
    assert sum(fields["white_marking_dashed_m"]) == pytest.approx(3.0 * len(dashes), rel=0.05)


def test_report_files_open_in_gis_with_styles(corridor: dict[str, Any]) -> None:
    report = corridor["root"] / "report_a"
    assert {"intervals", "interval_cells", "markings"} <= {name for name, _ in pyogrio.list_layers(report / "report.gpkg")}
    _, cells, _ = _read(report / "report.gpkg", "interval_cells")
    assert all(cell.is_valid for cell in cells)
    assert sum(cell.area for cell in cells) == pytest.approx(8.0 * LENGTH_M, rel=0.01)  # cells tile the corridor
    qml = ET.parse(report / "intervals.qml").getroot()
    assert qml.find("renderer-v2").get("attr") == "white_marking_wear"
    with sqlite3.connect(report / "report.gpkg") as db:
        styled = {row[0] for row in db.execute("SELECT f_table_name FROM layer_styles")}
    assert styled == {"intervals", "interval_cells", "markings"}
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page and "crack_sealing_m_per_100m2" in page
    assert (report / "intervals.csv").read_text().count("\n") == len(corridor["truth"]["intervals"]) + 1


def test_compare_finds_the_planted_changes_and_nothing_else(corridor: dict[str, Any]) -> None:
    truth = corridor["truth"]
    rows = {int(r["interval"]): r for r in _csv(corridor["root"] / "compare" / "changes.csv")}
    markings = {m["id"]: m for m in truth["markings"]}
    for row in truth["intervals"]:
        k = row["index"]
        got = rows[k]
        if float(got["valid_share_b"]) < 0.95:
            assert got["comparable"] == "0" and got["changed"] == "0"
            continue
        assert got["comparable"] == "1"
        planted = bool(row["removed"] or row["changed_wear"] or row["new_sealing_m"] > 0)
        assert got["changed"] == str(int(planted)), k
        assert float(got["new_sealing_m"]) == pytest.approx(row["new_sealing_m"], rel=0.05, abs=0.1), k
        assert int(got["missing_markings"]) == len(row["removed"]), k
        for name in ("white_marking", "yellow_marking"):
            kept = [m for m in markings.values() if m["class"] == name and not m["removed_in_b"]
                    and math.floor((m["from_m"] + m["to_m"]) / 2 / truth["interval_m"]) == k]
            total = sum(m["envelope_px"] for m in kept)
            expected = 100 * sum((m["wear_b"] - m["wear_a"]) * m["envelope_px"] for m in kept) / total
            assert float(got[f"{name}_wear_change"]) == pytest.approx(expected, abs=5.0), (k, name)
    assert any(r["comparable"] == "0" for r in rows.values())  # B stops short: its last interval is not compared
    missing = _csv(corridor["root"] / "compare" / "missing_markings.csv")
    removed = [m for m in truth["markings"] if m["removed_in_b"]]
    assert len(missing) == len(removed) == 1
    assert removed[0]["from_m"] <= float(missing[0]["chainage_m"]) <= removed[0]["to_m"]
    assert int(missing[0]["interval"]) == math.floor(removed[0]["from_m"] / truth["interval_m"])


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as source:
        return list(csv.DictReader(source))


def test_both_directions_give_one_carriageway_each() -> None:
    from roadparse.stages.report.chainage import Road, cut_intervals

    road = Road("1", "", shapely.LineString([(0, 0), (25, 0)]))
    intervals = cut_intervals(road, 10.0, 8.0, "both")
    forward = [i for i in intervals if i.direction == "forward"]
    backward = [i for i in intervals if i.direction == "backward"]
    assert [(i.from_m, i.to_m) for i in forward] == [(0, 10), (10, 20), (20, 25)]
    assert [(i.from_m, i.to_m) for i in backward] == [(0, 10), (10, 20), (20, 25)]
    assert all(i.cell.centroid.y < 0 for i in forward) and all(i.cell.centroid.y > 0 for i in backward)
    assert sum(i.cell.area for i in intervals) == pytest.approx(25 * 8)
    assert backward[0].line.coords[0] == (25.0, 0.0)
