"""roi stage without models: box mapping, merging, tiling edge rules, offline finder, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from roadparse.artifacts import list_tiles
from roadparse.config import load_settings
from roadparse.geometry import (
    axis_windows,
    cut_tile,
    merge_boxes,
    pixel_box,
    scale_boxes,
    tile_box,
)
from roadparse.io.images import image_size, read_image, read_image_reduced, write_image
from roadparse.models.offline_roi import find_road
from roadparse.stages import roi as roi_stage
from roadparse.workspace import Workspace

GREEN = (60, 140, 50)
GREY = (110, 110, 112)


def road_frame(
    width: int, height: int, band: tuple[int, int], vertical: bool = False, seed: int = 0
) -> np.ndarray:
    """Returns an (H, W, 3) uint8 noisy green frame with a smooth grey road band [band0, band1)."""
    rng = np.random.default_rng(seed)
    frame = np.clip(np.array(GREEN) + rng.normal(0, 30, (height, width, 3)), 0, 255)
    road = np.clip(np.array(GREY) + rng.normal(0, 3, (height, width, 1)), 0, 255)
    if vertical:
        frame[:, band[0] : band[1]] = road[:, band[0] : band[1]]
    else:
        frame[band[0] : band[1]] = road[band[0] : band[1]]
    return frame.astype(np.uint8)


def settings_with(*overrides: str):
    return load_settings(None, list(overrides))


# --- geometry -----------------------------------------------------------------


def test_scale_boxes_uses_exact_non_integer_scale_per_axis():
    reduced, full = (1024, 683), (7952, 5304)
    boxes = np.array([[10.5, 20.25, 100.0, 682.0], [0, 0, 1024, 683]])
    mapped = scale_boxes(boxes, reduced, full)
    sx, sy = 7952 / 1024, 5304 / 683
    np.testing.assert_allclose(mapped[0], [10.5 * sx, 20.25 * sy, 100 * sx, 682 * sy])
    np.testing.assert_allclose(
        mapped[1], [0, 0, 7952, 5304]
    )  # the whole reduced frame is the whole frame
    assert pixel_box(mapped[0], full) == (81, 157, 777, 5297)
    assert pixel_box((-5.0, -1.0, 9000.0, 6000.0), full) == (0, 0, 7952, 5304)
    assert pixel_box((3.0, 3.0, 3.0, 10.0), full) is None


def test_exif_rotated_frame_box_maps_to_oriented_full_resolution(tmp_path):
    # Displayed (oriented) frame: 900 wide x 1300 tall with a red block; stored rotated, EXIF orientation 6.
    displayed = np.zeros((1300, 900, 3), dtype=np.uint8)
    displayed[:] = (30, 30, 30)
    block = (213, 517, 611, 1002)  # x0, y0, x1, y1 in displayed pixels
    displayed[block[1] : block[3], block[0] : block[2]] = (250, 0, 0)
    stored = Image.fromarray(
        np.ascontiguousarray(np.rot90(displayed, 1))
    )  # exif_transpose(6) rotates it back
    exif = stored.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)

    reduced, full_size = read_image_reduced(path, 1024)
    assert full_size == image_size(path) == (900, 1300)
    assert reduced.shape[:2] == (1024, 709)
    red = (reduced[..., 0] > 180) & (reduced[..., 1] < 80)
    ys, xs = np.nonzero(red)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)
    mapped = scale_boxes(found, (reduced.shape[1], reduced.shape[0]), full_size)[0]
    tolerance = 2 * 1300 / 1024  # one reduced pixel of blur on either side
    np.testing.assert_allclose(mapped, block, atol=tolerance)
    x0, y0, x1, y1 = pixel_box(mapped, full_size)
    crop = read_image(path)[y0:y1, x0:x1]
    assert (crop[..., 0] > 180).mean() > 0.95


def test_merge_boxes_merges_chains_until_stable():
    boxes = np.array([[0, 0, 10, 10], [8, 0, 20, 10], [19, 0, 30, 10], [50, 50, 60, 60]])
    merged, members = merge_boxes(boxes, merge_iou=0.0)
    np.testing.assert_array_equal(merged, [[0, 0, 30, 10], [50, 50, 60, 60]])
    assert members == [[0, 1, 2], [3]]
    # with a high IoU threshold nothing touching only a little is merged
    merged, members = merge_boxes(boxes, merge_iou=0.5)
    assert len(merged) == 4
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 11]])
    assert len(merge_boxes(same, merge_iou=0.5)[0]) == 1
    assert merge_boxes(np.zeros((0, 4)))[0].shape == (0, 4)


def _coverage(windows, frame_size):
    count = np.zeros((frame_size[1], frame_size[0]), dtype=np.int32)
    for window in windows:
        x0, y0, x1, y1 = window.frame_box()
        count[y0:y1, x0:x1] += 1
    return count


BOXES = [(0, 0, 2000, 1700), (130, 75, 1931, 990), (300, 200, 700, 650), (0, 0, 800, 1600)]


@pytest.mark.parametrize("box", BOXES)
def test_shift_rule_covers_the_box_with_full_tiles_inside_the_frame(box):
    frame_size = (2000, 1700)
    windows = tile_box(box, frame_size, 800, 0, "shift")
    count = _coverage(windows, frame_size)
    x0, y0, x1, y1 = box
    assert (count[y0:y1, x0:x1] >= 1).all()
    for window in windows:
        assert (
            (window.width, window.height) == (800, 800) == (window.valid_width, window.valid_height)
        )
        assert (
            0 <= window.x
            and window.x + 800 <= frame_size[0]
            and 0 <= window.y
            and window.y + 800 <= frame_size[1]
        )
    if (x1 - x0) % 800 == 0 and (y1 - y0) % 800 == 0:
        assert (count[y0:y1, x0:x1] == 1).all()  # box a multiple of the tile: no double cover


@pytest.mark.parametrize("box", BOXES)
def test_pad_rule_covers_every_box_pixel_exactly_once(box):
    frame_size = (2000, 1700)
    windows = tile_box(box, frame_size, 800, 0, "pad")
    count = _coverage(windows, frame_size)
    x0, y0, x1, y1 = box
    assert (count[y0:y1, x0:x1] == 1).all()
    for window in windows:
        assert (window.width, window.height) == (800, 800)
        assert window.valid_width == min(800, frame_size[0] - window.x)
        assert window.valid_height == min(800, frame_size[1] - window.y)


@pytest.mark.parametrize("box", BOXES)
def test_drop_rule_keeps_only_full_tiles_inside_the_box(box):
    frame_size = (2000, 1700)
    windows = tile_box(box, frame_size, 800, 0, "drop")
    count = _coverage(windows, frame_size)
    x0, y0, x1, y1 = box
    assert count.max(initial=0) <= 1
    assert count.sum() == count[y0:y1, x0:x1].sum()  # nothing outside the box
    assert count.sum() == ((x1 - x0) // 800 * 800) * ((y1 - y0) // 800 * 800)


@pytest.mark.parametrize("rule", ["shift", "pad", "drop"])
def test_overlap_is_shared_by_neighbouring_tiles(rule):
    windows = axis_windows(0, 2000, 2000, 800, 200, rule)
    starts = [start for start, _, _ in windows]
    assert starts[:2] == [0, 600]
    if rule == "shift":
        assert starts == [0, 600, 1200]  # 1200 + 800 reaches the end exactly
    if rule == "pad":
        assert starts == [0, 600, 1200]
    if rule == "drop":
        assert starts == [0, 600, 1200]
    assert axis_windows(0, 2100, 2100, 800, 200, "shift")[-1][0] == 1300  # last one shifted inward
    with pytest.raises(ValueError, match="overlap"):
        axis_windows(0, 100, 100, 800, 800, rule)


def test_frame_smaller_than_a_tile():
    assert tile_box((0, 0, 100, 100), (100, 100), 800, 0, "shift")[0].frame_box() == (
        0,
        0,
        100,
        100,
    )
    padded = tile_box((0, 0, 100, 100), (100, 100), 800, 0, "pad")
    assert len(padded) == 1 and (padded[0].width, padded[0].valid_width) == (800, 100)
    assert tile_box((0, 0, 100, 100), (100, 100), 800, 0, "drop") == []
    frame = np.full((100, 100, 3), 7, dtype=np.uint8)
    tile = cut_tile(frame, padded[0])
    assert tile.shape == (800, 800, 3) and (tile[:100, :100] == 7).all() and (tile[100:] == 0).all()


# --- offline finder -------------------------------------------------------------


def test_offline_finder_finds_a_grey_band_on_green():
    frame = road_frame(1024, 683, (300, 420))
    regions = find_road(frame)
    truth = np.zeros(frame.shape[:2], dtype=bool)
    truth[300:420] = True
    iou = (regions.mask & truth).sum() / (regions.mask | truth).sum()
    assert iou > 0.9
    assert len(regions.boxes) == 1
    x0, y0, x1, y1 = regions.boxes[0]
    assert x0 <= 2 and x1 >= 1022 and abs(y0 - 300) <= 4 and abs(y1 - 420) <= 4
    assert len(find_road(road_frame(256, 256, (0, 0))).boxes) == 0  # vegetation only: nothing


def test_offline_finder_on_synthetic_scene():
    synth = pytest.importorskip("roadparse.synth")
    # a 7952 x 5304 frame at 0.25 cm/px seen at long side 1024 is 1.94 cm/px
    image, label = synth.render_frame(
        np.random.default_rng(3), 1024, 683, gsd_cm=0.25 * 7952 / 1024
    )
    road = label != 6  # classes 0..5 lie on the road surface, 6 is everything else
    mask = find_road(image).mask
    iou = (mask & road).sum() / (mask | road).sum()
    assert iou > 0.9 and iou > road.mean() + 0.05  # clearly better than taking the whole frame


# --- stage ------------------------------------------------------------------------


def test_mode_none_gives_one_tile_per_800px_image(tmp_path):
    frames = tmp_path / "tiles"
    for index in range(3):
        write_image(frames / f"t{index}.png", np.full((800, 800, 3), index * 40, dtype=np.uint8))
    workspace = Workspace(tmp_path / "work")
    manifest = roi_stage.run(workspace, settings_with("roi.mode=none"), sorted(frames.iterdir()))
    tiles = list_tiles(workspace)
    assert [t.id for t in tiles] == ["t0_x0_y0", "t1_x0_y0", "t2_x0_y0"]
    assert all(t.offset == (0, 0) and t.size == (800, 800) == t.valid for t in tiles)
    np.testing.assert_array_equal(
        read_image(tiles[2].path), np.full((800, 800, 3), 80, dtype=np.uint8)
    )
    assert manifest["summary"]["tiles"] == 3
    again = roi_stage.run(workspace, settings_with("roi.mode=none"), sorted(frames.iterdir()))
    assert (
        again["fingerprint"] == manifest["fingerprint"]
        and again["finished"] == manifest["finished"]
    )


def test_offline_mode_tiles_the_full_resolution_road_of_a_rotated_frame(tmp_path):
    displayed = road_frame(1400, 2000, (500, 900), vertical=True)  # a vertical road, 400 px wide
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(displayed, 1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    frames = tmp_path / "frames"
    frames.mkdir()
    stored.save(frames / "rot.jpg", quality=95, exif=exif)
    write_image(frames / "field.jpg", road_frame(1200, 900, (0, 0)))  # no road
    workspace = Workspace(tmp_path / "work")
    manifest = roi_stage.run(workspace, settings_with("roi.mode=offline"), sorted(frames.iterdir()))
    record = manifest["items"]["rot"]
    assert record["frame_size"] == [1400, 2000]
    (box,) = [b["box"] for b in record["boxes"]]
    assert abs(box[0] - 500) <= 6 and abs(box[2] - 900) <= 6 and box[1] <= 6 and box[3] >= 1994
    assert [t["offset"] for t in record["tiles"]] == [
        [300, 0],
        [300, 800],
        [300, 1600],
    ]  # grow rule: 3 tiles from the top, the last padded (valid 400 px): no pixel tiled twice
    full = read_image(frames / "rot.jpg")
    for tile in list_tiles(workspace):
        if tile.frame.endswith("rot.jpg"):
            x, y = tile.offset
            width, height = tile.valid
            np.testing.assert_array_equal(read_image(tile.path)[:height, :width], full[y : y + height, x : x + width])
    assert manifest["items"]["field"]["tiles"] == []
    assert manifest["summary"]["frames_without_road"] == ["field"]
    assert record["memory"]["peak_array_mb"] > 0


@pytest.mark.parametrize("target", [None, 0.5])
def test_two_road_boxes_of_a_frame_never_tile_a_pixel_twice(tmp_path, monkeypatch, target):
    from roadparse.models.offline_roi import RoadRegions

    two_boxes = np.array([[0, 0, 300, 100], [330, 0, 630, 100]], dtype=np.float64)  # apart, but their grids meet

    def fake_find(image):
        return RoadRegions(np.zeros(image.shape[:2], bool), two_boxes, np.ones(2))

    monkeypatch.setattr(roi_stage, "find_road", fake_find)
    frames = tmp_path / "frames"
    write_image(frames / "f.png", road_frame(1024, 400, (0, 100)))
    overrides = ["roi.mode=offline", "roi.gsd_cm=0.25", "roi.tile_size=200" if target is None else "roi.tile_size=100"]
    if target is not None:
        overrides.append(f"roi.target_gsd_cm={target}")
    workspace = Workspace(tmp_path / "work")
    manifest = roi_stage.run(workspace, settings_with(*overrides), sorted(frames.iterdir()))
    record = manifest["items"]["f"]
    assert len(record["regions"]) == 2
    assert [t["offset"] for t in record["tiles"]] == [[0, 0], [200, 0], [400, 0], [600, 0]]  # one grid, not 2 + 2
    covered = np.zeros((400, 1024), np.int32)
    for tile in list_tiles(workspace):
        x0, y0, x1, y1 = tile.frame_box()
        covered[y0:y1, x0:x1] += 1
    assert covered.max() == 1 and covered[:100, :630].min() == 1
    assert record["processed_share"] == pytest.approx(4 * 200 * 200 / (1024 * 400), abs=1e-4)
    assert manifest["summary"]["max_processed_share"] <= 1.0


def test_bad_inputs_are_recorded_and_the_run_goes_on(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    frames = tmp_path / "frames"
    frames.mkdir()
    write_image(frames / "good.jpg", road_frame(1000, 700, (250, 450)))
    data = (frames / "good.jpg").read_bytes()
    (frames / "truncated.jpg").write_bytes(data[: len(data) // 2])
    write_image(frames / "small.png", np.full((100, 100, 3), 90, dtype=np.uint8))
    Image.fromarray(np.full((300, 400), 40000, dtype=np.uint16)).save(frames / "deep.tif")
    transform = rasterio.Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)
    for name, crs in (("geo.tif", "EPSG:32633"), ("nocrs.tif", None)):
        with rasterio.open(
            frames / name,
            "w",
            driver="GTiff",
            width=900,
            height=500,
            count=3,
            dtype="uint8",
            crs=crs,
            transform=transform,
        ) as out:
            out.write(np.full((3, 500, 900), 120, dtype=np.uint8))

    workspace = Workspace(tmp_path / "work")
    manifest = roi_stage.run(workspace, settings_with("roi.mode=none", "roi.tile_size=800"), sorted(frames.iterdir()))
    assert "truncated.jpg" in manifest["failed"]["truncated"]
    assert manifest["summary"]["problems"]["truncated"].startswith("failed:")
    items = manifest["items"]
    assert [(t["size"], t["valid"]) for t in items["small"]["tiles"]] == [([800, 800], [100, 100])]  # one padded tile
    assert "scaled to 8 bit" in " ".join(items["deep"]["warnings"])
    assert read_image(workspace.root / "roi" / items["deep"]["tiles"][0]["path"]).max() == round(
        40000 / 257
    )
    assert "no CRS" in manifest["summary"]["problems"]["nocrs"]
    geo_tiles = items["geo"]["tiles"]
    assert [t["offset"] for t in geo_tiles] == [[0, 0], [800, 0]]  # grow: the second tile padded past the frame
    assert "32633" in geo_tiles[1]["crs"]
    assert geo_tiles[1]["transform"] == [0.5, 0.0, 500400.0, 0.0, -0.5, 4100000.0]
    assert items["geo"]["gsd"]["cm"] == 50.0 and items["geo"]["gsd"]["source"] == "geotiff"
    assert items["small"]["gsd"]["source"] == "default" and "roi.gsd_cm" in " ".join(items["small"]["warnings"])
    assert items["nocrs"]["tiles"][0]["crs"] is None
    assert manifest["summary"]["frames"] == 6 and manifest["summary"]["failed"] == 1

    padded = roi_stage.run(
        Workspace(tmp_path / "pad"),
        settings_with("roi.mode=none", "roi.edge_rule=pad"),
        [frames / "small.png"],
    )
    assert padded["items"]["small"]["tiles"][0]["size"] == [800, 800]
    assert padded["items"]["small"]["tiles"][0]["valid"] == [100, 100]


def test_cli_roi_offline(tmp_path):
    from roadparse.cli import main

    frames = tmp_path / "frames"
    write_image(frames / "a.jpg", road_frame(1000, 700, (250, 450)))
    result = CliRunner().invoke(
        main, ["roi", str(frames), str(tmp_path / "work"), "--mode", "offline"]
    )
    assert result.exit_code == 0, result.output
    assert "1 frames -> 2 tiles" in result.output
    manifest = json.loads((tmp_path / "work" / "roi" / "manifest.json").read_text())
    assert manifest["settings"]["mode"] == "offline"
    missing = CliRunner().invoke(
        main,
        [
            "roi",
            str(tmp_path / "frames"),
            str(tmp_path / "w2"),
            "--set",
            "roi.detector=/no/such/model",
        ],
    )
    assert missing.exit_code == 1 and "/no/such/model" in missing.output
