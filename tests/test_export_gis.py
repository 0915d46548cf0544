"""GIS files that open in the right place: CRS per format, valid geometries, fields, QGIS styles in class colours."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from tests.export_data import CLASSES, CONE, ROAD, SEALING, WHITE, write_prediction

pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
pytest.importorskip("rasterio")

UTM33 = 32633
ORIGIN = (500000.0, 5400000.0)  # UTM 33N, near 15° E 48.75° N
GSD_M = 0.005


def scene() -> np.ndarray:
    """Returns (300, 1200) labels: road, a 5 m x 4 cm sealing line, a 0.5 m white square, a cone."""
    labels = np.full((300, 1200), ROAD, np.uint8)
    labels[50:58, 100:1100] = SEALING
    labels[150:250, 300:400] = WHITE
    labels[150:190, 600:640] = CONE
    return labels


def georeferenced(tmp_path: Path) -> Path:
    from pyproj import CRS

    geo = {"crs": CRS.from_epsg(UTM33).to_wkt(), "transform": [GSD_M, 0.0, ORIGIN[0], 0.0, -GSD_M, ORIGIN[1]]}
    return write_prediction(tmp_path / "pred", {"ortho": scene()}, geo={"ortho": geo})


def read_layer(path: Path, layer: str | None = None) -> tuple[dict, list, list[dict]]:
    """Returns (pyogrio info, shapely geometries, attribute dicts) of a layer."""
    info = pyogrio.read_info(path, layer=layer)
    meta, _, geometry, fields = pyogrio.raw.read(path, layer=layer)
    count = len(fields[0]) if fields else 0
    rows = [{k: f[i] for k, f in zip(meta["fields"], fields, strict=True)} for i in range(count)]
    return info, [shapely.from_wkb(g) for g in geometry] if geometry is not None else [], rows


def test_geojson_of_georeferenced_frames_is_rfc7946_wgs84(tmp_path: Path) -> None:
    from pyproj import CRS, Transformer

    from roadparse.stages.export.run import export_vectors

    export_vectors(georeferenced(tmp_path), tmp_path / "geojson", "geojson")
    path = tmp_path / "geojson" / "white_marking.geojson"
    assert "crs" not in json.loads(path.read_text())  # RFC 7946: WGS84 implied, no crs member
    info, (square,), (record,) = read_layer(path)
    assert CRS.from_user_input(info["crs"]).to_epsg() == 4326
    assert square.is_valid and -180 < square.centroid.x < 180 and square.centroid.x == pytest.approx(15.0, abs=0.1)
    to_utm = Transformer.from_crs(4326, UTM33, always_xy=True)
    east, north = to_utm.transform(square.centroid.x, square.centroid.y)
    assert (east, north) == pytest.approx((ORIGIN[0] + 350 * GSD_M, ORIGIN[1] - 200 * GSD_M), abs=0.02)
    assert record["area_m2"] == pytest.approx(0.25) and record["class"] == "white_marking"  # measured in metres
    _, (line,), (line_record,) = read_layer(tmp_path / "geojson" / "crack_sealing_centreline.geojson")
    assert line.is_valid and line_record["length_m"] == pytest.approx(5.0, rel=0.03)
    assert {"width_cm", "frame", "tile", "model", "run", "confidence"} <= set(line_record)


def test_geojson_of_frames_without_georeference_is_refused_naming_gpkg(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main
    from roadparse.stages.export.gis import UnreferencedGeoJSONError
    from roadparse.stages.export.run import export_vectors

    pred = write_prediction(tmp_path / "pred", {"frame1": scene()})
    with pytest.raises(UnreferencedGeoJSONError, match=r"no georeference.*WGS84.*--format gpkg"):
        export_vectors(pred, tmp_path / "layers", "geojson")
    assert not (tmp_path / "layers").exists()
    result = CliRunner().invoke(main, ["export", str(pred), "--format", "geojson"])
    assert result.exit_code == 1 and "--format gpkg" in result.output


def test_gpkg_and_shapefile_without_georeference_carry_a_local_metric_crs(tmp_path: Path) -> None:
    from pyproj import CRS

    from roadparse.stages.export.run import export_vectors

    pred = write_prediction(tmp_path / "pred", {"frame1": scene()})
    export_vectors(pred, tmp_path / "o.gpkg", "gpkg")
    export_vectors(pred, tmp_path / "shp", "shp")
    for path, layer in ((tmp_path / "o.gpkg", "white_marking"), (tmp_path / "shp" / "white_marking.shp", None)):
        info, (square,), _ = read_layer(path, layer)
        crs = CRS.from_user_input(info["crs"])
        assert crs.type_name == "Engineering CRS" and not crs.is_geographic  # never read as degrees
        assert crs.axis_info[0].unit_name in ("metre", "Meter")
        assert square.is_valid and square.bounds == pytest.approx((1.5, -1.25, 2.0, -0.75))  # metres, y up


def class_colour(qml: str) -> tuple[str, list[str]]:
    """Returns (the symbol type, the colours of its symbol layers) of a QML style."""
    root = ElementTree.fromstring(qml.split("\n", 1)[1])  # past the DOCTYPE
    symbol = root.find("./renderer-v2/symbols/symbol")
    assert symbol is not None
    colours = [option.get("value", "") for option in symbol.iter("Option") if option.get("name") in ("color", "line_color")]
    return symbol.get("type", ""), colours


def test_qgis_styles_carry_the_class_colours(tmp_path: Path) -> None:
    from roadparse.stages.export.run import export_vectors

    pred = georeferenced(tmp_path)
    export_vectors(pred, tmp_path / "shp", "shp")
    for name in ("road", "white_marking", "crack_sealing", "traffic_cone", "crack_sealing_centreline"):
        kind, colours = class_colour((tmp_path / "shp" / f"{name}.qml").read_text())
        rgb = ",".join(map(str, CLASSES.colors[CLASSES.index(name.removesuffix("_centreline"))]))
        assert kind == ("line" if name.endswith("_centreline") else "fill")
        assert any(c.startswith(rgb + ",") for c in colours), (name, colours)
    export_vectors(pred, tmp_path / "o.gpkg", "gpkg")
    _, _, rows = read_layer(tmp_path / "o.gpkg", "layer_styles")
    styles = {row["f_table_name"]: row for row in rows}
    assert set(styles) == {name for name, _ in pyogrio.list_layers(tmp_path / "o.gpkg")} - {"layer_styles"}
    road = styles["road"]
    assert road["f_geometry_column"] == "geom" and road["useAsDefault"] and road["f_table_schema"] == ""
    assert class_colour(road["styleQML"])[1][0].startswith("128,64,128,")
