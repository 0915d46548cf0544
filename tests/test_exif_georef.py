"""Drone JPEG metadata (EXIF written in the test) and its nadir footprint in UTM."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadparse.io.exif import read_drone_metadata

pytest.importorskip("pyproj")

LAT, LON = 48.141667, 11.570139  # (48° 8' 30", 11° 34' 12.5")


def _dms(value: float) -> tuple[float, float, float]:
    deg = int(value)
    minutes = int((value - deg) * 60)
    return float(deg), float(minutes), (value - deg - minutes / 60) * 3600


def write_drone_jpeg(path: Path, *, altitude: float | None = 30.0, yaw: float = 30.0, pitch: float = -90.0,
                     model: str = "FC6310", size: tuple[int, int] = (120, 80), capture: tuple[int, int] | None = None,
                     focal_plane_xres_mm: float | None = None) -> Path:
    """Writes a JPEG with DJI-style EXIF (GPS, camera, focal length; ``capture``: PixelX/YDimension, the size the
    camera wrote, as DJI drones do; ``focal_plane_xres_mm``: FocalPlaneXResolution in pixels per mm) and XMP
    (altitude, gimbal)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "DJI", model
    exif[0x8825] = {1: "N", 2: _dms(LAT), 3: "E", 4: _dms(LON), 6: 520.0}
    exif[0x8769] = {0x920A: 8.8}
    if capture is not None:
        exif[0x8769] |= {0xA002: capture[0], 0xA003: capture[1]}
    if focal_plane_xres_mm is not None:
        exif[0x8769] |= {0xA20E: focal_plane_xres_mm, 0xA210: 4}
    props = f'drone-dji:GimbalYawDegree="{yaw:+.2f}" drone-dji:GimbalPitchDegree="{pitch:+.2f}"'
    if altitude is not None:
        props += f' drone-dji:RelativeAltitude="{altitude:+.2f}"'
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           f'<rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" {props}/></rdf:RDF></x:xmpmeta>')
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), xmp=xmp.encode())
    return path


def test_metadata_record_and_gsd(tmp_path: Path) -> None:
    meta = read_drone_metadata(write_drone_jpeg(tmp_path / "f.jpg"))
    assert meta.lat == pytest.approx(LAT, abs=1e-9) and meta.lon == pytest.approx(LON, abs=1e-9)
    assert (meta.relative_altitude_m, meta.yaw_deg, meta.pitch_deg, meta.focal_mm) == (30.0, 30.0, -90.0, 8.8)
    assert meta.camera_model == "FC6310" and meta.sensor_width_mm == 13.2 and meta.estimated == ()
    assert meta.gsd_cm() == pytest.approx(100 * 30 * 13.2 / (8.8 * 120))


def test_footprint_centre_on_gps_point_and_yaw(tmp_path: Path) -> None:
    from pyproj import Transformer

    from roadparse.io.georef import georeference_frame

    footprint = georeference_frame(write_drone_jpeg(tmp_path / "f.jpg", yaw=90.0))
    gps_e, gps_n = Transformer.from_crs("EPSG:4326", f"EPSG:{footprint.epsg}", always_xy=True).transform(LON, LAT)
    assert footprint.epsg == 32632
    centre = footprint.pixel_to_utm(60, 40)
    assert math.dist(centre, (gps_e, gps_n)) < 1.0 and math.dist(footprint.centre, (gps_e, gps_n)) < 1e-6
    top = footprint.pixel_to_utm(60, 0)  # yaw 90°: the top of the image points east
    bearing = math.degrees(math.atan2(top[0] - centre[0], top[1] - centre[1]))
    assert abs(bearing - 90.0) < 3.0  # plus the grid convergence (~1.9° here)
    assert math.dist(top, centre) == pytest.approx(40 * footprint.gsd_m)


def test_oblique_frame_is_refused_naming_the_pitch(tmp_path: Path) -> None:
    from roadparse.io.georef import ObliqueFrameError, georeference_frame

    with pytest.raises(ObliqueFrameError, match=r"gimbal pitch -45°"):
        georeference_frame(write_drone_jpeg(tmp_path / "f.jpg", pitch=-45.0))
    # 5° off nadir is accepted; the centre moves forward by altitude × tan(5°) along the yaw
    tilted = georeference_frame(write_drone_jpeg(tmp_path / "g.jpg", pitch=-85.0, yaw=0.0))
    nadir = georeference_frame(write_drone_jpeg(tmp_path / "h.jpg", pitch=-90.0, yaw=0.0))
    assert math.dist(tilted.centre, nadir.centre) == pytest.approx(30 * math.tan(math.radians(5)), rel=1e-3)
    assert tilted.centre[1] > nadir.centre[1]


def test_bad_metadata_warns_names_frame_and_value(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        meta = read_drone_metadata(write_drone_jpeg(tmp_path / "bad.jpg", altitude=-3.0, model="NoSuchCam"))
    assert meta.relative_altitude_m == 30.0 and set(meta.estimated) == {"relative_altitude_m", "sensor_width_mm"}
    text = caplog.text
    assert "bad.jpg" in text and "relative altitude -3 m" in text and "relative_altitude_m = 30" in text
    assert "'NoSuchCam'" in text and "sensor_width_mm = 13.2" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        meta = read_drone_metadata(write_drone_jpeg(tmp_path / "noalt.jpg", altitude=None))
    assert "noalt.jpg: no relative altitude" in caplog.text and meta.gsd_cm() > 0


def test_predict_georeferences_drone_jpeg(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    import torch
    from transformers import SegformerConfig

    from roadparse.cli import main
    from roadparse.io.georef import georeference_frame
    from roadparse.models.segmenters import build_segmenter, save_segmenter

    torch.manual_seed(0)
    config = SegformerConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                             decoder_hidden_size=8)
    config.save_pretrained(tmp_path / "cfg")
    model = build_segmenter("segformer", str(tmp_path / "cfg"), 7, pretrained=False)
    model_dir = save_segmenter(model, tmp_path / "model", {})
    frames = tmp_path / "frames"
    frames.mkdir()
    write_drone_jpeg(frames / "nadir.jpg", size=(64, 48))
    write_drone_jpeg(frames / "oblique.jpg", size=(64, 48), pitch=-60.0)
    out = tmp_path / "pred"
    main.main(["predict", str(model_dir), str(frames), "--out", str(out), "--set", "predict.window=32",
               "--set", "predict.device=cpu"], standalone_mode=False)
    footprint = georeference_frame(frames / "nadir.jpg")
    with rasterio.open(out / "nadir_label.tif") as labels:
        assert labels.crs.to_epsg() == footprint.epsg
        centre = labels.transform @ (32, 24)
    assert math.dist(centre, footprint.centre) < 1.0
    assert (out / "nadir_label.pgw").is_file() and (out / "nadir_label.png.aux.xml").is_file()
    assert not (out / "oblique_label.tif").exists()
    import json

    records = {Path(r["input"]).name: r for r in json.loads((out / "summary.json").read_text())["images"]}
    assert records["nadir.jpg"]["gsd_source"] == "exif"
    assert "gimbal pitch -60°" in records["oblique.jpg"]["georeference_refused"]
