"""Ground sampling distance per frame: each source (GeoTIFF made here, JPEG with EXIF written here), bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadparse.io.geo import read_geo_info
from roadparse.io.gsd import DEFAULT_GSD_CM, frame_gsd
from test_exif_georef import write_drone_jpeg

rasterio = pytest.importorskip("rasterio")


def _geotiff(path: Path, crs: str | None, transform: tuple[float, ...], size: tuple[int, int] = (64, 48)) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=size[0], height=size[1], count=3, dtype="uint8",
                       crs=crs, transform=rasterio.Affine(*transform)) as out:
        out.write(np.full((3, size[1], size[0]), 100, dtype=np.uint8))
    return path


def test_projected_geotiff_gives_its_pixel_size(tmp_path):
    path = _geotiff(tmp_path / "utm.tif", "EPSG:32633", (0.02, 0, 500000, 0, -0.02, 4100000))
    gsd = frame_gsd(path, read_geo_info(path), setting=0.7)
    assert gsd.source == "geotiff" and gsd.cm == pytest.approx(2.0) and gsd.notes == ()


def test_projected_geotiff_in_feet_is_converted(tmp_path):
    # NAD83 / California zone 6 (ftUS): 0.1 ft pixels = 3.048 cm
    path = _geotiff(tmp_path / "ft.tif", "EPSG:2230", (0.1, 0, 6000000, 0, -0.1, 2000000))
    assert frame_gsd(path, read_geo_info(path), None).cm == pytest.approx(3.048, rel=1e-5)


def test_geographic_geotiff_measured_on_the_ellipsoid(tmp_path):
    # 1e-7 degrees at 48° N: 1.113 cm north-south, 0.745 cm east-west on WGS84
    path = _geotiff(tmp_path / "wgs.tif", "EPSG:4326", (1e-7, 0, 11.57, 0, -1e-7, 48.14))
    gsd = frame_gsd(path, read_geo_info(path), None)
    assert gsd.source == "geotiff"
    assert gsd.cm == pytest.approx((1.1131 + 0.7446) / 2, rel=2e-3)


def test_geotiff_without_crs_falls_back_with_a_note(tmp_path):
    path = _geotiff(tmp_path / "nocrs.tif", None, (0.5, 0, 100, 0, -0.5, 200))
    gsd = frame_gsd(path, read_geo_info(path), setting=1.5)
    assert gsd.source == "setting" and gsd.cm == 1.5 and "no CRS" in gsd.notes[0]


def test_drone_jpeg_exif_gives_the_gsd(tmp_path):
    path = write_drone_jpeg(tmp_path / "dji.jpg", altitude=40.0, size=(5472, 8))
    gsd = frame_gsd(path, None, setting=0.7)  # EXIF comes before the setting
    assert gsd.source == "exif" and gsd.estimated == () and gsd.notes == ()
    assert gsd.cm == pytest.approx(100 * 40 * 13.2 / (8.8 * 5472))  # Phantom 4 Pro at 40 m: 1.10 cm/px


@pytest.mark.parametrize("altitude", [None, 0.0, -3.0])
def test_exif_without_usable_altitude_warns_and_uses_the_setting(tmp_path, caplog, altitude):
    path = write_drone_jpeg(tmp_path / "f.jpg", altitude=altitude)
    with caplog.at_level(logging.WARNING):
        gsd = frame_gsd(path, None, setting=1.2)
    assert gsd.source == "setting" and gsd.cm == 1.2
    assert "f.jpg" in gsd.notes[0] and "roi.gsd_cm = 1.2" in gsd.notes[0]
    assert any("f.jpg" in r.message for r in caplog.records)


def test_exif_without_altitude_and_no_setting_is_an_estimate_named_in_a_warning(tmp_path):
    path = write_drone_jpeg(tmp_path / "f.jpg", altitude=0.0)
    gsd = frame_gsd(path, None, setting=None)
    assert gsd.source == "exif" and "relative_altitude_m" in gsd.estimated
    assert gsd.cm == pytest.approx(100 * 30 * 13.2 / (8.8 * 120))  # 30 m used, named in the note
    assert "f.jpg" in gsd.notes[0] and "altitude 30 m" in gsd.notes[0]


def test_unknown_camera_is_an_estimate_never_a_crash(tmp_path):
    path = write_drone_jpeg(tmp_path / "odd.jpg", model="NoSuchCam")
    gsd = frame_gsd(path, None, setting=None)
    assert gsd.source == "exif" and "sensor_width_mm" in gsd.estimated and "odd.jpg" in gsd.notes[0]


def test_plain_image_uses_the_setting_or_the_paper_default(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(path)
    assert (frame_gsd(path, None, 0.5).source, frame_gsd(path, None, 0.5).cm) == ("setting", 0.5)
    default = frame_gsd(path, None, None)
    assert default.source == "default" and default.cm == DEFAULT_GSD_CM and "roi.gsd_cm" in default.notes[0]


def test_target_gsd_resamples_frames_and_labels_follow(tmp_path):
    from roadparse.artifacts import list_tiles, tile_ground_truth
    from roadparse.config import load_settings
    from roadparse.io.images import read_image, write_image
    from roadparse.io.labels import load_classes, write_label_png
    from roadparse.stages import roi
    from roadparse.workspace import Workspace

    frames, labels = tmp_path / "frames", tmp_path / "labels"
    image = np.zeros((200, 400, 3), np.uint8)
    image[:, 200:] = 255
    label = np.zeros((200, 400), np.uint8)
    label[:, 200:] = 1
    write_image(frames / "f.png", image)
    write_label_png(labels / "f.png", label, load_classes())
    settings = load_settings(None, ["roi.mode=none", "roi.gsd_cm=0.5", "roi.target_gsd_cm=1.0", "roi.tile_size_m=1.0"])
    manifest = roi.run(Workspace(tmp_path / "w"), settings, [frames / "f.png"])
    record = manifest["items"]["f"]
    assert record["gsd"] == {"cm": 0.5, "source": "setting", "working_cm": 1.0, "scale": 0.5, "tile_px": 100, "overlap_px": 0}
    tiles = list_tiles(Workspace(tmp_path / "w"))
    assert [(t.offset, t.size, t.scale) for t in tiles] == [((0, 0), (100, 100), 0.5), ((200, 0), (100, 100), 0.5)]
    assert read_image(tiles[1].path).min() == 255 and read_image(tiles[0].path).max() == 0
    assert (tile_ground_truth(tiles[1], labels) == 1).all() and (tile_ground_truth(tiles[0], labels) == 0).all()
    assert record["processed_share"] == 1.0


@pytest.mark.parametrize(
    ("size", "reference", "change", "scale"),
    [
        ((5472, 3648), (5472, 3648), "unchanged", 1.0),
        ((3648, 5472), (5472, 3648), "unchanged", 1.0),  # turned by 90°
        ((2736, 1824), (5472, 3648), "resized", 0.5),
        ((1824, 2736), (5472, 3648), "resized", 0.5),  # resized and turned
        ((1761, 1554), (5472, 3648), "cropped", 1.0),
        ((5472, 3078), (5472, 3648), "cropped", 1.0),  # a 16:9 image of a 3:2 sensor
        ((6000, 1000), (5472, 3648), "unknown", 1.0),  # wider than the capture, another shape
    ],
)
def test_size_change_is_decided_by_the_aspect_ratio(size, reference, change, scale):
    from roadparse.io.exif import size_change

    found, factor = size_change(size, reference)
    assert found == change and factor == pytest.approx(scale)


def test_frames_cropped_from_one_capture_share_its_gsd(tmp_path):
    """Three crops of one 4000x3000 capture at one height (issue #29: 4.59 / 3.44 / 2.56 cm/px from their widths)."""
    expected = 100 * 40 * 6.17 / (8.8 * 4000)  # Mini 2 sensor, EXIF focal 8.8 mm, the capture's 4000 px
    for name, size in {"a": (98, 61), "b": (131, 97), "c": (176, 155)}.items():
        path = write_drone_jpeg(tmp_path / f"{name}.jpg", altitude=40.0, model="FC7303", size=size, capture=(4000, 3000))
        gsd = frame_gsd(path, None, setting=None)
        assert gsd.source == "exif" and gsd.size_change == "cropped" and gsd.notes == ()
        assert gsd.cm == pytest.approx(expected)
        assert gsd.record()["size_change"] == "cropped"


def test_resized_frame_scales_the_gsd(tmp_path):
    full = frame_gsd(write_drone_jpeg(tmp_path / "full.jpg", altitude=40.0, size=(548, 365), capture=(548, 365)), None, None)
    half = frame_gsd(write_drone_jpeg(tmp_path / "half.jpg", altitude=40.0, size=(274, 182), capture=(548, 365)), None, None)
    assert full.size_change == "unchanged" and "size_change" not in full.record()
    assert half.size_change == "resized" and half.cm == pytest.approx(2 * full.cm, rel=0.01)


def test_camera_modes_that_crop_the_sensor_keep_its_pixel_size(tmp_path):
    """A Phantom 4 Pro writes 4:3 and 16:9 images by cropping its 3:2 sensor (5472 px across 13.2 mm)."""
    expected = 100 * 30 * 13.2 / (8.8 * 5472)
    for size in ((4864, 3648), (5472, 3078)):
        path = write_drone_jpeg(tmp_path / f"{size[0]}.jpg", size=(size[0] // 8, size[1] // 8), capture=size)
        gsd = frame_gsd(path, None, None)
        assert gsd.size_change == "resized"  # 1/8 of the capture
        assert gsd.cm == pytest.approx(8 * expected, rel=0.01)
    # the table's full-sensor size stands in for a missing PixelXDimension
    cropped = frame_gsd(write_drone_jpeg(tmp_path / "c.jpg", size=(1761, 1554)), None, None)
    assert cropped.size_change == "cropped" and cropped.cm == pytest.approx(expected)


def test_focal_plane_resolution_gives_the_gsd_of_a_crop_of_an_unknown_camera(tmp_path):
    # 200 px per mm on the sensor, 8.8 mm focal length, 30 m: 100 * 30 / (8.8 * 200) cm/px whatever the crop
    path = write_drone_jpeg(tmp_path / "x.jpg", model="TestCam", size=(300, 100), capture=(2000, 1500), focal_plane_xres_mm=200.0)
    gsd = frame_gsd(path, None, None)
    assert gsd.estimated == () and gsd.size_change == "cropped"
    assert gsd.cm == pytest.approx(100 * 30 / (8.8 * 200))


def test_a_frame_larger_than_its_capture_is_noted(tmp_path):
    path = write_drone_jpeg(tmp_path / "odd.jpg", model="TestCam", size=(300, 100), capture=(200, 150), focal_plane_xres_mm=200.0)
    gsd = frame_gsd(path, None, None)
    assert gsd.size_change == "unknown" and "odd.jpg" in gsd.notes[0] and "neither a crop nor a resize" in gsd.notes[0]
