"""The second synthetic family (``--style urban``) and the highway family left unchanged."""

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.io.labels import read_label_png
from roadparse.synth import render_frame
from roadparse.synth.dataset import generate_dataset
from roadparse.synth.scene import GUARDRAIL, TRAFFIC_CONE, WHITE_MARKING, YELLOW_MARKING
from roadparse.synth.styles import STYLE_NAMES, get_style
from roadparse.synth.urban import render_urban_frame
from roadparse.synth.urban_layout import plan_street

# sha256 of (image bytes, label bytes) of highway frames rendered before the urban style
# existed (numpy 2 / OpenCV 4 on x86-64): the highway family must stay byte-identical.
HIGHWAY_PINS = [
    ((0, 400, 300, 0.25), "2dab1b8ba8e8e25361d3dabb13c909626dd12b2af2c4fdc9848cb828e1382488",
     "f488d26a60bd75f7113be9d8950c5ca4495da6fa2abf442e298ef82cfb180d94"),
    ((5, 320, 240, 0.5), "ad5b9a09327c71af53792f590380ce15a3f787302f66c411ac9b28495575f4f0",
     "74f908d004dec9a6eed18160e892cab30cf9ce36a37173c157cf1f314a5b25b4"),
]


@pytest.mark.parametrize(("args", "image_sha", "label_sha"), HIGHWAY_PINS)
def test_highway_frames_are_unchanged(args, image_sha, label_sha):
    seed, width, height, gsd = args
    image, label = get_style("highway").render(np.random.default_rng(seed), width, height, gsd)
    assert hashlib.sha256(label.tobytes()).hexdigest() == label_sha
    assert hashlib.sha256(image.tobytes()).hexdigest() == image_sha
    again = render_frame(np.random.default_rng(seed), width, height, gsd)
    assert np.array_equal(again[0], image)


def test_styles_are_listed_and_unknown_ones_refused():
    assert STYLE_NAMES[0] == "highway" and get_style("urban").default_gsd_cm == 0.5
    assert get_style("highway").default_gsd_cm == 0.25
    with pytest.raises(ValueError, match="highway, urban"):
        get_style("rural")


def test_urban_frame_is_valid_and_deterministic():
    image, label = render_urban_frame(np.random.default_rng(4), 360, 240, 1.0)
    assert image.shape == (240, 360, 3) and image.dtype == np.uint8
    assert label.shape == (240, 360) and label.dtype == np.uint8
    assert label.max() <= 6
    again = render_urban_frame(np.random.default_rng(4), 360, 240, 1.0)
    assert np.array_equal(image, again[0]) and np.array_equal(label, again[1])
    with pytest.raises(ValueError, match="positive"):
        render_urban_frame(np.random.default_rng(0), 100, 100, 0.0)


def test_tiny_urban_set_holds_every_class_and_says_so(tmp_path):
    summary = generate_dataset(tmp_path, n_frames=4, width=480, height=320, seed=0, tile_size=240,
                               gsd_cm=1.0, style="urban", progress=False)
    seen = set()
    for index in range(4):
        label = read_label_png(tmp_path / "labels" / f"frame_{index:04d}.png")
        assert label.max() <= 6
        seen |= set(np.unique(label).tolist())
    assert seen == set(range(7))
    shares = summary["class_pixel_share"]
    assert summary["style"] == "urban" and sum(shares.values()) == pytest.approx(1.0)
    assert shares["traffic_cone"] < 0.02 and shares["guardrail"] < 0.1  # rare classes stay rare
    readme = (tmp_path / "README.md").read_text()
    assert "style `urban`" in readme and "1.0 cm/px" in readme and "crosswalk" in readme
    assert f"{100 * shares['guardrail']:.2f}%" in readme


def _centre_line_width(seed: int, width: int, height: int, gsd: float) -> float:
    """Returns the rendered width (px, across the street) of the first centre line."""
    plan = plan_street(np.random.default_rng(seed), width, height, 100.0 / gsd)
    _, label = render_urban_frame(np.random.default_rng(seed), width, height, gsd)
    _, v = plan.axis.coords(height, width)
    v0, v1 = plan.section.centre_lines[0]
    class_id = YELLOW_MARKING if plan.section.centre_yellow else WHITE_MARKING
    near = (label == class_id) & (v > v0 - 2) & (v < v1 + 2)
    assert near.sum() > 50, "the centre line should be in view"
    return float(v[near].max() - v[near].min())


def test_gsd_scales_object_sizes():
    # The same scene (plan in metres) at 0.5 and 1 cm/px: the frame covers the same ground.
    fine = _centre_line_width(9, 600, 400, 0.5)
    coarse = _centre_line_width(9, 300, 200, 1.0)
    assert fine / coarse == pytest.approx(2.0, rel=0.1)
    plan_fine = plan_street(np.random.default_rng(9), 400, 300, 200.0)
    plan_coarse = plan_street(np.random.default_rng(9), 400, 300, 100.0)
    width = plan_fine.section.kerb_a[1] - plan_fine.section.kerb_a[0]
    assert width == pytest.approx(2 * (plan_coarse.section.kerb_a[1] - plan_coarse.section.kerb_a[0]))
    assert 0.15 * 200 <= width <= 0.3 * 200  # a 15-30 cm kerb at 0.5 cm/px


def test_urban_classes_look_like_what_they_are():
    rgb_sums = np.zeros((7, 3))
    counts = np.zeros(7)
    for index in range(3):
        image, label = render_urban_frame(np.random.default_rng([1, index]), 480, 320, 1.0)
        for class_id in range(7):
            mask = label == class_id
            rgb_sums[class_id] += image[mask].astype(np.float64).sum(axis=0)
            counts[class_id] += mask.sum()
    mean = rgb_sums / np.maximum(counts, 1)[:, None]
    assert mean[WHITE_MARKING].mean() > mean[0].mean() + 40  # paint brighter than asphalt
    assert mean[YELLOW_MARKING][1] - mean[YELLOW_MARKING][2] > 60
    if counts[TRAFFIC_CONE]:
        assert mean[TRAFFIC_CONE][0] - mean[TRAFFIC_CONE][2] > 40
    if counts[GUARDRAIL]:
        assert mean[GUARDRAIL].mean() > mean[0].mean() + 30  # bright zinc


def test_cli_style_and_default_gsd(tmp_path):
    out = tmp_path / "urban"
    result = CliRunner().invoke(main, ["synth", str(out), "--style", "urban", "--frames", "1",
                                       "--width", "200", "--height", "160", "--tile-size", "200"])
    assert result.exit_code == 0, result.output
    assert "frames (urban," in result.stdout and "0.5 cm/px" in result.stdout
    assert "style `urban`" in (out / "README.md").read_text()
    highway = tmp_path / "highway"
    result = CliRunner().invoke(main, ["synth", str(highway), "--frames", "1", "--width", "200",
                                       "--height", "160", "--tile-size", "200"])
    assert result.exit_code == 0, result.output
    readme = (highway / "README.md").read_text()
    assert "style `highway`" in readme and "0.25 cm/px" in readme
    bad = CliRunner().invoke(main, ["synth", str(out), "--style", "rural"])
    assert bad.exit_code != 0
