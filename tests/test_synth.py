"""Synthetic drone-road dataset: exact labels, every class present, determinism, layout."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.io.images import read_image
from roadparse.io.labels import load_classes, read_label_png
from roadparse.synth import render_frame, render_tile
from roadparse.synth.dataset import (
    frame_tiles,
    generate_dataset,
    make_tiny_dataset,
    split_frames,
    tile_offsets,
)
from roadparse.synth.primitives import RoadAxis, band_mask, dashed_mask, disc_mask, polyline_mask
from roadparse.synth.scene import (
    CRACK_SEALING,
    GUARDRAIL,
    OTHER,
    ROAD,
    TRAFFIC_CONE,
    WHITE_MARKING,
    YELLOW_MARKING,
    Canvas,
    paint_cone,
)
from roadparse.synth.texture import GroundFields

PX_PER_M = 400.0  # 0.25 cm/px, the paper's GSD


@pytest.fixture(scope="module")
def default_frame():
    return render_frame(np.random.default_rng(7), 2400, 1600)


def test_class_ids_match_the_builtin_class_file():
    names = load_classes().names
    ids = {"road": ROAD, "white_marking": WHITE_MARKING, "yellow_marking": YELLOW_MARKING,
           "guardrail": GUARDRAIL, "crack_sealing": CRACK_SEALING, "traffic_cone": TRAFFIC_CONE,
           "other": OTHER}
    assert {name: names.index(name) for name in ids} == ids


def test_band_area_matches_the_analytic_area_of_a_tilted_marking():
    angle = 0.3
    axis = RoadAxis(origin=(400.0, 300.0), angle=angle)
    u, v = axis.coords(600, 800)
    width_px = 0.18 * PX_PER_M  # an 18 cm line
    mask = band_mask(v, -width_px / 2, width_px / 2)
    # The strip crosses the frame from the left to the right border.
    assert mask[:, 0].any() and mask[:, -1].any()
    assert mask.sum() == pytest.approx(width_px / np.cos(angle) * 800, rel=0.01)
    dashes = dashed_mask(u, v, -width_px / 2, width_px / 2, dash=200.0, gap=200.0, phase=0.0)
    assert dashes.sum() == pytest.approx(mask.sum() / 2, rel=0.05)
    assert not (dashes & ~mask).any()


def test_road_axis_to_xy_inverts_coords():
    axis = RoadAxis(origin=(300.0, 200.0), angle=2.9, curvature=1e-4)
    u, v = axis.coords(400, 600)
    x, y = axis.to_xy(u[123, 456], v[123, 456])
    assert (float(x), float(y)) == pytest.approx((456.0, 123.0), abs=1e-3)


def test_disc_and_polyline_areas_match_geometry():
    radius = 0.175 * PX_PER_M  # a 35 cm cone
    assert disc_mask((300, 300), (150.3, 149.7), radius).sum() == pytest.approx(np.pi * radius**2, rel=0.01)
    thickness = 15  # a 3.75 cm sealing strip, 1 m long, with round caps
    line = polyline_mask((300, 600), np.array([[100.0, 150.0], [500.0, 150.0]]), thickness)
    assert line[:, 300].sum() == thickness
    assert line.sum() == pytest.approx(400 * thickness + np.pi * thickness**2 / 4, rel=0.02)


def _flat_canvas(size: int, grey: float = 100.0) -> Canvas:
    canvas = Canvas.blank(size, size, ROAD)
    canvas.image[:] = grey
    return canvas


def test_cone_label_area_and_paint_line_up():
    rng = np.random.default_rng(0)
    canvas = _flat_canvas(400)
    fields = GroundFields.make(rng, 400, 400, PX_PER_M)
    radius = 0.175 * PX_PER_M
    orange = np.array([240.0, 100.0, 25.0], dtype=np.float32)
    assert paint_cone(rng, canvas, fields, (200.0, 200.0), radius, sun_angle=0.5, orange=orange) is not None
    cone = canvas.label == TRAFFIC_CONE
    # Union of the disc and its square base (side 1.9 r): 3.61 r^2 + four circular segments.
    half = 0.95
    segment = np.arccos(half) - half * np.sqrt(1 - half**2)
    assert cone.sum() == pytest.approx((4 * half**2 + 4 * segment) * radius**2, rel=0.02)
    image = canvas.image * canvas.shade[..., None]
    red, blue = image[..., 0], image[..., 2]
    orange_px = (red > 150) & (red - blue > 100)
    white_px = image.min(axis=2) > 200
    dark_px = image.max(axis=2) < 60
    assert ((orange_px | white_px | dark_px)[cone]).mean() > 0.99
    assert not (orange_px | white_px)[~cone].any()  # no cone colour outside its label
    assert orange_px[cone].mean() > 0.5 and white_px[cone].mean() > 0.1
    # The shadow darkens the road beside the cone, but the label there stays road.
    assert (canvas.shade[~cone] < 0.8).any() and (canvas.label[~cone] == ROAD).all()


def test_cone_cut_by_the_border_is_clipped_not_lost():
    rng = np.random.default_rng(1)
    canvas = _flat_canvas(200)
    fields = GroundFields.make(rng, 200, 200, PX_PER_M)
    paint_cone(rng, canvas, fields, (5.0, 100.0), 70.0, 0.0, np.array([240.0, 100.0, 25.0]))
    area = (canvas.label == TRAFFIC_CONE).sum()
    assert 0.3 * np.pi * 70**2 < area < 0.8 * np.pi * 70**2


def test_every_class_appears_in_a_default_frame(default_frame):
    image, label = default_frame
    assert image.shape == (1600, 2400, 3) and image.dtype == np.uint8
    assert label.shape == (1600, 2400) and label.dtype == np.uint8
    share = np.bincount(label.ravel(), minlength=7) / label.size
    assert set(np.unique(label)) == set(range(7))
    assert share[ROAD] > 0.4
    assert share[GUARDRAIL] > 0.03 and share[OTHER] > 0.03
    assert share[WHITE_MARKING] > 0.004 and share[YELLOW_MARKING] > 0.01
    assert share[CRACK_SEALING] > 0.002 and share[TRAFFIC_CONE] > 0.005
    # At least three cones lie entirely inside the frame.
    n_blobs, blobs = cv2.connectedComponents((label == TRAFFIC_CONE).astype(np.uint8))
    inside = 0
    for blob in range(1, n_blobs):
        ys, xs = np.nonzero(blobs == blob)
        inside += ys.min() > 0 and xs.min() > 0 and ys.max() < 1599 and xs.max() < 2399
    assert inside >= 3


def test_class_colours_are_where_the_labels_are(default_frame):
    image, label = default_frame
    rgb = image.astype(np.float32)
    mean = {c: rgb[label == c].mean(axis=0) for c in range(7)}
    luma = {c: m.mean() for c, m in mean.items()}
    assert luma[WHITE_MARKING] > luma[ROAD] + 60
    assert mean[YELLOW_MARKING][1] - mean[YELLOW_MARKING][2] > 80  # yellow: G >> B
    assert mean[TRAFFIC_CONE][0] - mean[TRAFFIC_CONE][2] > 60  # orange: R >> B
    assert luma[CRACK_SEALING] < luma[ROAD] - 25
    assert abs(mean[ROAD][0] - mean[ROAD][2]) < 25  # grey asphalt
    # Paint edges are sharp: the marking is brighter than the road right next to it.
    white = (label == WHITE_MARKING).astype(np.uint8)
    ring = (cv2.dilate(white, np.ones((7, 7), np.uint8)) > 0) & (label == ROAD)
    assert rgb[label == WHITE_MARKING].mean() - rgb[ring].mean() > 50


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_small_frames_still_hold_every_class(seed):
    _, label = render_frame(np.random.default_rng(seed), 800, 600)
    assert set(np.unique(label)) == set(range(7))


def test_render_is_deterministic_by_seed():
    first = render_tile(np.random.default_rng(3), 400)
    again = render_tile(np.random.default_rng(3), 400)
    other = render_tile(np.random.default_rng(4), 400)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        render_frame(np.random.default_rng(0), 0, 100)
    with pytest.raises(ValueError):
        tile_offsets(0, 800)
    with pytest.raises(ValueError, match="dev_fraction"):
        split_frames(["a", "b"], 1.0, 0)


def test_tile_offsets_shift_the_last_tile_inward():
    assert tile_offsets(2400, 800) == [0, 800, 1600]
    assert tile_offsets(1000, 800) == [0, 200]
    assert tile_offsets(600, 800) == [0]
    assert frame_tiles(1000, 600, 800) == [(0, 0, 800, 600), (200, 0, 800, 600)]


def test_split_is_disjoint_complete_and_deterministic():
    ids = [f"frame_{i:04d}" for i in range(10)]
    split = split_frames(ids, 0.25, seed=5)
    assert split == split_frames(ids, 0.25, seed=5)
    assert not set(split["train"]) & set(split["dev"])
    assert sorted(split["train"] + split["dev"]) == ids
    assert len(split["dev"]) == 2 or len(split["dev"]) == 3
    assert split_frames(["a", "b"], 0.1, 0)["dev"] != []


def test_dataset_layout_tiles_and_determinism(tmp_path):
    out = tmp_path / "synth"
    summary = generate_dataset(out, n_frames=3, width=500, height=300, seed=11, tile_size=200,
                               gsd_cm=0.5, progress=False)
    frame_ids = ["frame_0000", "frame_0001", "frame_0002"]
    assert summary["frames"] == 3 and summary["tiles"] == 3 * 3 * 2
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["train"] + split["dev"]) == frame_ids and len(split["dev"]) == 1
    assert load_classes(out / "classes.yaml") == load_classes()
    readme = (out / "README.md").read_text()
    assert "seed 11" in readme and "0.5 cm/px" in readme and "visible" in readme
    for frame_id in frame_ids:
        frame = read_image(out / "frames" / f"{frame_id}.jpg")
        label = read_label_png(out / "labels" / f"{frame_id}.png")
        assert frame.shape == (300, 500, 3) and label.shape == (300, 500)
        covered = np.zeros(label.shape, dtype=bool)
        for x, y in [(0, 0), (200, 0), (300, 0), (0, 100), (200, 100), (300, 100)]:
            tile_id = f"{frame_id}_x{x}_y{y}"
            tile = read_image(out / "tiles" / "images" / f"{tile_id}.png")
            tile_label = read_label_png(out / "tiles" / "labels" / f"{tile_id}.png")
            assert tile.shape == (200, 200, 3) and tile_label.shape == (200, 200)
            assert np.array_equal(tile_label, label[y : y + 200, x : x + 200])
            # The tile is lossless, the frame a JPEG: equal up to JPEG noise, and far
            # closer than the same crop a few pixels off.
            jpeg_error = np.abs(tile.astype(int) - frame[y : y + 200, x : x + 200]).mean()
            shifted = np.abs(tile[3:, 3:].astype(int) - frame[y : y + 197, x : x + 197]).mean()
            assert jpeg_error < 5.0 and jpeg_error < 0.5 * shifted
            covered[y : y + 200, x : x + 200] = True
        assert covered.all()
    assert len(list((out / "tiles" / "images").iterdir())) == 18
    again = tmp_path / "again"
    generate_dataset(again, n_frames=3, width=500, height=300, seed=11, tile_size=200,
                     gsd_cm=0.5, progress=False)
    for frame_id in frame_ids:
        name = f"labels/{frame_id}.png"
        assert (out / name).read_bytes() == (again / name).read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_tiny_dataset_has_every_class_in_every_frame(tmp_path):
    summary = make_tiny_dataset(tmp_path)
    assert summary["frames"] == 2 and summary["dev"] == 1
    for frame_id in ("frame_0000", "frame_0001"):
        label = read_label_png(tmp_path / "labels" / f"{frame_id}.png")
        assert set(np.unique(label)) == set(range(7))


def test_cli_writes_a_dataset_and_one_summary_line(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main, ["synth", str(out), "--frames", "2", "--width", "400", "--height", "300",
               "--tile-size", "200", "--gsd-cm", "0.5", "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("wrote")]
    assert len(lines) == 1 and "2 frames" in lines[0] and "8 tiles" in lines[0]
    assert (out / "frames" / "frame_0001.jpg").exists() and (out / "split.json").exists()
    bad = CliRunner().invoke(main, ["synth", str(out), "--frames", "0"])
    assert bad.exit_code != 0
