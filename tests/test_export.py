"""Exports on synthetic label maps of known geometry: layers, centre-lines, tile joins, measurements, COCO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.export_data import CLASSES, CONE, ROAD, SEALING, WHITE, write_prediction

from roadparse.io.labels import write_label_png

pyogrio = pytest.importorskip("pyogrio")
pytest.importorskip("shapely")
pytest.importorskip("rasterio")

def scene() -> np.ndarray:
    """Returns (600, 2200) labels: road with a 10 m x 4 cm sealing line, a 1 m² marking square and two cones."""
    labels = np.full((600, 2200), ROAD, np.uint8)
    labels[100:108, 100:2100] = SEALING  # 2000 px x 8 px at 0.5 cm: 10 m x 4 cm
    labels[300:500, 300:500] = WHITE  # 200 x 200 px: 1 m²
    labels[300:340, 1000:1040] = CONE
    labels[300:340, 1200:1240] = CONE
    return labels


def test_gpkg_layers_line_length_square_area_and_measurements(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_vectors

    pred = write_prediction(tmp_path / "pred", {"frame1": scene()})
    result = export_vectors(pred, tmp_path / "out" / "survey.gpkg", "gpkg")
    path = tmp_path / "out" / "survey.gpkg"
    layers = {name for name, _ in pyogrio.list_layers(path)}
    assert {"road", "crack_sealing", "crack_sealing_centreline", "white_marking", "traffic_cone"} <= layers
    meta, _, geometry, fields = pyogrio.raw.read(path, layer="crack_sealing_centreline")
    assert len(geometry) == 1  # one polyline
    import shapely

    line = shapely.from_wkb(geometry[0])
    assert line.geom_type == "LineString"
    record = dict(zip(meta["fields"], [f[0] for f in fields], strict=True))
    assert record["length_m"] == pytest.approx(10.0, abs=0.1) and line.length == pytest.approx(10.0, abs=0.1)
    assert record["width_cm"] == pytest.approx(4.0, abs=0.2)
    assert record["frame"] == "frame1" and record["model"] == "model" and record["run"] == "abc123"
    meta, _, geometry, fields = pyogrio.raw.read(path, layer="white_marking")
    record = dict(zip(meta["fields"], [f[0] for f in fields], strict=True))
    assert len(geometry) == 1 and record["area_m2"] == pytest.approx(1.0, abs=0.02)
    assert shapely.from_wkb(geometry[0]).area == pytest.approx(1.0, abs=0.02)
    assert record["confidence"] == pytest.approx(230 / 255, abs=1e-3)
    assert meta["crs"].startswith("LOCAL_CS[")  # no georeference: local metres, said so
    survey = json.loads((tmp_path / "out" / "measurements.json").read_text())["survey"]
    assert survey["traffic_cone_count"] == 2 and survey["crack_sealing_m"] == pytest.approx(10.0, abs=0.1)
    assert survey["white_marking_m"] > 0 and survey["area_m2.white_marking"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "measurements_frames.csv").read_text().startswith("frame,area_m2.road")
    assert "<table>" in (tmp_path / "out" / "measurements.html").read_text()
    assert result["layers"]["traffic_cone"] == 2


def read_features(path: Path, layer: str) -> list[tuple[object, dict]]:
    """Returns (shapely geometry, attributes) of every feature of a layer."""
    import shapely

    meta, _, geometry, fields = pyogrio.raw.read(path, layer=layer)
    return [(shapely.from_wkb(g), {k: f[i] for k, f in zip(meta["fields"], fields, strict=True)})
            for i, g in enumerate(geometry)]


def test_polygon_split_by_tile_border_is_one_feature(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_vectors

    frame = scene()
    # two roi tiles cut at x = 400 (through the square and the line); the second padded by 200 px
    tiles = {"f_x0_y0": frame[:, :400], "f_x400_y0": np.pad(frame[:, 400:], ((0, 0), (0, 200)), constant_values=CONE)}
    pred = write_prediction(tmp_path / "pred", tiles)
    work = tmp_path / "work"
    (work / "roi").mkdir(parents=True)
    manifest = {"items": {"f": {"frame": "/frames/f.jpg", "tiles": [
        {"id": "f_x0_y0", "path": "tiles/f_x0_y0.png", "offset": [0, 0], "size": [400, 600], "valid": [400, 600]},
        {"id": "f_x400_y0", "path": "tiles/f_x400_y0.png", "offset": [400, 0], "size": [2000, 600], "valid": [1800, 600]},
    ]}}}
    (work / "roi" / "manifest.json").write_text(json.dumps(manifest))
    export_vectors(pred, tmp_path / "layers.gpkg", "gpkg", workdir=work)
    square = read_features(tmp_path / "layers.gpkg", "white_marking")
    assert len(square) == 1
    assert square[0][1]["area_m2"] == pytest.approx(1.0) and square[0][1]["tile"] == "f_x0_y0,f_x400_y0"
    lines = read_features(tmp_path / "layers.gpkg", "crack_sealing_centreline")
    assert len(lines) == 1 and lines[0][1]["length_m"] == pytest.approx(10.0, abs=0.1)
    cones = read_features(tmp_path / "layers.gpkg", "traffic_cone")
    assert len(cones) == 2  # the padding (painted as cones) is cut off at the tile's valid width


def test_geotiff_predictions_keep_crs_in_gpkg_and_shapefile(tmp_path: Path) -> None:
    from pyproj import CRS

    from roadparse.stages.export.run import export_vectors

    crs = CRS.from_epsg(32633).to_wkt()
    transform = [0.005, 0.0, 500000.0, 0.0, -0.005, 5400000.0]
    pred = write_prediction(tmp_path / "pred", {"ortho": scene()}, geo={"ortho": {"crs": crs, "transform": transform}})
    export_vectors(pred, tmp_path / "o.gpkg", "gpkg")
    info = pyogrio.read_info(tmp_path / "o.gpkg", layer="white_marking")
    assert CRS.from_user_input(info["crs"]).to_epsg() == 32633
    _, _, geometry, _ = pyogrio.raw.read(tmp_path / "o.gpkg", layer="white_marking")
    import shapely

    minx, miny, maxx, maxy = shapely.from_wkb(geometry[0]).bounds
    assert (minx, maxy) == pytest.approx((500000.0 + 300 * 0.005, 5400000.0 - 300 * 0.005))
    export_vectors(pred, tmp_path / "shp", "shp")
    assert CRS.from_user_input(pyogrio.read_info(tmp_path / "shp" / "road.shp")["crs"]).to_epsg() == 32633


def test_coco_roundtrip_with_pycocotools(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from roadparse.stages.export.run import export_coco

    labels = np.full((60, 90), ROAD, np.uint8)
    labels[5:9, 10:80] = SEALING
    labels[20:30, 20:30] = CONE
    labels[20:30, 60:70] = CONE
    labels[40:, :] = 255
    pred = write_prediction(tmp_path / "pred", {"a": labels, "b": np.flipud(labels).copy()})
    export_coco(pred, tmp_path / "coco.json", min_area_m2=0.0)
    coco = COCO(str(tmp_path / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES.names)
    for image in coco.loadImgs(coco.getImgIds()):
        source = labels if image["file_name"] == "a.png" else np.flipud(labels)
        rebuilt = np.full(source.shape, 255, np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            mask = coco.annToMask(annotation).astype(bool)
            assert mask.sum() == annotation["area"] and not (rebuilt[mask] != 255).any()
            rebuilt[mask] = annotation["category_id"] - 1
            assert annotation["score"] == pytest.approx(230 / 255, abs=1e-3)
            assert mask_utils.toBbox(annotation["segmentation"]).tolist() == annotation["bbox"]
        np.testing.assert_array_equal(rebuilt, source)
    assert len(coco.getAnnIds(catIds=[CONE + 1])) == 4


def test_coco_of_pseudo_labels_folder(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_coco

    labels_dir = tmp_path / "work" / "pseudolabel" / "labels"
    labels_dir.mkdir(parents=True)
    labels = np.full((20, 20), 255, np.uint8)
    labels[:10] = ROAD
    write_label_png(labels_dir / "t1.png", labels, CLASSES)
    result = export_coco(tmp_path / "work", tmp_path / "pl.json")
    data = json.loads((tmp_path / "pl.json").read_text())
    assert result["annotations"] == 1 and data["images"][0]["file_name"] == "t1.png"
    assert "score" not in data["annotations"][0]


def test_cli_export_and_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main

    pred = write_prediction(tmp_path / "pred", {"frame1": scene()})
    result = CliRunner().invoke(main, ["export", str(pred), "--format", "gpkg"])
    assert result.exit_code == 0, result.output
    assert (pred / "export.gpkg").is_file() and "crack_sealing_centreline (1)" in result.output
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "shp"])
    assert result.exit_code == 1 and "summary.json: not found" in result.output


def resampled_workdir(work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Writes a roi manifest of one 400 x 200 px frame at 0.25 cm/px tiled at a working 0.5 cm/px
    (scale 0.5: two 100 x 100 tiles, offsets 0 and 200 frame px) and returns their working-resolution labels.

    A white square of 20 x 20 working px (40 x 40 frame px, 10 cm) straddles the tile border at
    working x = 100: frame pixels x 180..220, y 20..60. Everything else is road.
    """
    (work / "roi").mkdir(parents=True)
    tiles = [{"id": f"f_x{x}_y0", "path": f"tiles/f_x{x}_y0.png", "offset": [x, 0], "size": [100, 100],
              "valid": [100, 100], "gsd_cm": 0.5, "scale": 0.5, "working_offset": [x // 2, 0]} for x in (0, 200)]
    record = {"frame": "/frames/f.jpg", "frame_size": [400, 200], "tiles": tiles,
              "gsd": {"cm": 0.25, "source": "setting", "working_cm": 0.5, "scale": 0.5}}
    (work / "roi" / "manifest.json").write_text(json.dumps({"items": {"f": record}}))
    working = np.full((100, 200), ROAD, np.uint8)
    working[10:30, 90:110] = WHITE
    return working[:, :100].copy(), working[:, 100:].copy()


def test_coco_of_a_resampled_workdir_is_in_frame_pixels(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    from roadparse.stages.export.run import export_coco

    work = tmp_path / "work"
    left, right = resampled_workdir(work)
    labels_dir = work / "pseudolabel" / "labels"
    labels_dir.mkdir(parents=True)
    write_label_png(labels_dir / "f_x0_y0.png", left, CLASSES)
    write_label_png(labels_dir / "f_x200_y0.png", right, CLASSES)
    result = export_coco(work, tmp_path / "pl.json", min_area_m2=0.0)
    data = json.loads((tmp_path / "pl.json").read_text())
    assert result["images"] == 1 and data["images"][0] == {"id": 1, "file_name": "f.jpg", "width": 400, "height": 200,
                                                           "gsd_cm": 0.25}
    assert data["info"]["coordinates"].startswith("frame pixels")
    (square,) = [a for a in data["annotations"] if a["category_id"] == WHITE + 1]
    assert square["bbox"] == [180, 20, 40, 40] and square["area"] == 1600  # one region across the tile border
    assert square["area_m2"] == pytest.approx(0.01)  # 10 cm x 10 cm
    expected = np.zeros((200, 400), np.uint8)
    expected[20:60, 180:220] = 1
    np.testing.assert_array_equal(mask_utils.decode(square["segmentation"]), expected)
    (road,) = [a for a in data["annotations"] if a["category_id"] == ROAD + 1]
    assert road["area"] == 400 * 200 - 1600


@pytest.mark.parametrize("gsd_cm", [None, 0.25])
def test_vectors_of_resampled_tiles_lie_on_the_frame_in_metres(tmp_path: Path, gsd_cm: float | None) -> None:

    from roadparse.stages.export.run import export_vectors

    work = tmp_path / "work"
    left, right = resampled_workdir(work)
    pred = write_prediction(tmp_path / "pred", {"f_x0_y0": left, "f_x200_y0": right})
    summary = json.loads((pred / "summary.json").read_text())
    for record in summary["images"]:
        record["pixel_area_m2"] = 1e-6  # predict's setting, wrong for these tiles: the workdir's GSD wins
    (pred / "summary.json").write_text(json.dumps(summary))
    result = export_vectors(pred, tmp_path / "layers.gpkg", "gpkg", workdir=work, gsd_cm=gsd_cm)
    ((geometry, square),) = read_features(tmp_path / "layers.gpkg", "white_marking")
    assert square["area_m2"] == pytest.approx(0.01)
    assert square["tile"] == "f_x0_y0,f_x200_y0"
    bounds = geometry.bounds  # local metres, y up from the frame's top-left
    assert bounds == pytest.approx((180 * 0.0025, -60 * 0.0025, 220 * 0.0025, -20 * 0.0025))
    assert result["measurements"]["f"]["area_m2.road"] == pytest.approx(400 * 200 * 0.0025**2 - 0.01)


def test_coco_leaves_out_regions_under_the_mask_area_filter_and_gives_gsd_everywhere(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main
    from roadparse.stages.export.run import export_coco

    labels = np.full((200, 300), ROAD, np.uint8)
    labels[20:60, 20:60] = CONE  # 1600 px at 0.5 cm/px: 400 cm², kept
    labels[100:120, 100:120] = CONE  # 400 px: 100 cm², under the 187.5 cm² of masks.min_mask_area_cm2
    labels[150, 150] = labels[10, 250] = SEALING  # one-pixel specks
    pred = write_prediction(tmp_path / "pred", {"a": labels})
    result = CliRunner().invoke(main, ["export", str(pred), "--format", "coco", "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["images"][0]["gsd_cm"] == pytest.approx(0.5)
    assert sorted(a["area"] for a in data["annotations"]) == [1600, 300 * 200 - 1600 - 400 - 2]
    assert all(a["area_m2"] == pytest.approx(a["area"] * 0.005**2) for a in data["annotations"])
    assert data["info"]["min_area_m2"] == pytest.approx(0.01875) and data["info"]["left_out"] == 3
    assert "3 region(s) under 0.01875 m² left out" in result.output
    assert export_coco(pred, tmp_path / "all.json", min_area_m2=0.0)["annotations"] == 5
    # a work directory's own mask filter (pixels at a GSD, as the masks stage records it) is the default
    work = tmp_path / "work"
    (work / "masks").mkdir(parents=True)
    (work / "masks" / "manifest.json").write_text(json.dumps({"summary": {"min_mask_area_px": {"0.5": 100}}}))
    (work / "pseudolabel" / "labels").mkdir(parents=True)
    write_label_png(work / "pseudolabel" / "labels" / "t.png", labels, CLASSES)
    result_work = export_coco(work, tmp_path / "w.json", gsd_cm=0.5)
    images = json.loads((tmp_path / "w.json").read_text())["images"]
    assert result_work["min_area_m2"] == pytest.approx(0.0025) and result_work["annotations"] == 3
    assert images[0]["gsd_cm"] == 0.5
