"""Centre-lines of ragged markings: length within 3 %, width within 10 %, one piece per marking."""

from __future__ import annotations

import numpy as np
import pytest
from tests.export_data import CLASSES, ROAD, SEALING, WHITE

from roadparse.centrelines import (
    centre_line_paths,
    extend_to_edge,
    path_length,
    skeleton_graph,
    smooth_path,
    trim_end,
)
from roadparse.synth.ragged import ragged_marking

pytest.importorskip("shapely")
pytest.importorskip("rasterio")


def export_centre_lines(labels: np.ndarray, gsd_cm: float, class_name: str) -> list[tuple[object, float, float]]:
    """Returns (geometry, length_m, width_cm) of the centre-lines ``roadparse export`` makes of one frame."""
    from roadparse.stages.export.rasters import FrameRaster
    from roadparse.stages.export.vectors import frame_layers

    pixel = gsd_cm / 100.0
    raster = FrameRaster("f", labels, None, (pixel, 0.0, 0.0, 0.0, -pixel, 0.0), None, ())
    layer = frame_layers(raster, CLASSES)[f"{class_name}_centreline"]
    return list(zip(layer.geometries, layer.attributes["length_m"], layer.attributes["width_cm"], strict=True))


MARKINGS = [  # (length m, width m, radius m or None)
    pytest.param(6.0, 0.15, None, id="lane-line-6m"),
    pytest.param(1.9, 0.15, None, id="dash-1.9m"),
    pytest.param(3.0, 0.15, 4.0, id="curve-3m-r4m"),
    pytest.param(4.0, 0.04, 3.0, id="sealing-4m-r3m"),
]


@pytest.mark.parametrize("gsd_cm", [0.5, 2.0])
@pytest.mark.parametrize(("length_m", "width_m", "radius_m"), MARKINGS)
def test_ragged_marking_length_within_3_and_width_within_10_percent(
    length_m: float, width_m: float, radius_m: float | None, gsd_cm: float
) -> None:
    px = 100.0 / gsd_cm
    for seed in range(3):
        rng = np.random.default_rng(seed)
        mask = ragged_marking(rng, length_m * px, width_m * px, None if radius_m is None else radius_m * px,
                              angle=float(rng.uniform(0, np.pi)))
        labels = np.where(mask, WHITE, ROAD).astype(np.uint8)
        ((line, length, width),) = export_centre_lines(labels, gsd_cm, "white_marking")  # one piece
        assert line.geom_type == "LineString"
        assert length == pytest.approx(length_m, rel=0.03), f"seed {seed}"
        assert width == pytest.approx(100 * width_m, rel=0.10), f"seed {seed}"


def test_dashed_line_gives_one_line_per_dash() -> None:
    rng = np.random.default_rng(7)
    px = 100 / 0.5
    dash = ragged_marking(rng, 1.9 * px, 0.15 * px, angle=0.0)
    labels = np.full((dash.shape[0], 3 * dash.shape[1]), ROAD, np.uint8)
    for k in range(3):
        piece = ragged_marking(rng, 1.9 * px, 0.15 * px, angle=0.0)
        labels[:, k * dash.shape[1] : (k + 1) * dash.shape[1]][piece] = WHITE
    lines = export_centre_lines(labels, 0.5, "white_marking")
    assert len(lines) == 3 and all(line.geom_type == "LineString" for line, _, _ in lines)
    assert [length for _, length, _ in lines] == pytest.approx([1.9] * 3, rel=0.03)


def test_forked_sealing_keeps_its_branch() -> None:
    """A Y of 4.5 cm sealing: arms of 1 m and 0.5 m from one point; the fork is kept, the total is their sum."""
    from skimage.draw import line as draw_line

    gsd_cm, px = 0.5, 200
    labels = np.full((600, 600), ROAD, np.uint8)
    skeleton = np.zeros(labels.shape, bool)
    for end in ((100, 300), (500, 300), (300, 400)):  # (row, col): two 1 m arms and a 0.5 m one from (300, 300)
        skeleton[draw_line(300, 300, *end)] = True
    from scipy import ndimage

    labels[ndimage.distance_transform_edt(~skeleton) <= 4.0] = SEALING  # 9 px = 4.5 cm wide, round ends
    ((line, length, width),) = export_centre_lines(labels, gsd_cm, "crack_sealing")
    assert line.geom_type == "MultiLineString" and len(line.geoms) == 3  # three arms meeting at the fork
    assert length == pytest.approx((2.5 * px + 3 * 4.5) / px, rel=0.03)  # + the round caps of 3 ends
    assert width == pytest.approx(4.5, rel=0.10)


def test_skeleton_graph_diagonal_with_a_step_is_one_branch() -> None:
    skeleton = np.eye(50, dtype=bool)
    skeleton[10, 11] = True  # an L-shaped step: no triangle, still one branch
    graph = skeleton_graph(skeleton)
    assert len(graph.branches) == 1 and len(graph.branches[0]) == 51


def test_smooth_trim_extend_keep_a_straight_line_straight() -> None:
    points = np.stack([np.arange(20.0), np.full(20, 5.5)], axis=1)
    assert smooth_path(points, 3.0) == pytest.approx(points)
    trimmed = trim_end(points, 4.5)
    assert trimmed[-1] == pytest.approx([14.5, 5.5]) and path_length(trimmed) == pytest.approx(14.5)
    mask = np.zeros((12, 30), bool)
    mask[3:8, 0:25] = True
    extended = extend_to_edge(trimmed, mask, lookback=4.0, limit=20.0)
    assert extended[-1][0] == pytest.approx(25.0, abs=0.25) and extended[-1][1] == pytest.approx(5.5)


def test_a_blob_gets_one_line_along_its_long_axis() -> None:
    mask = np.zeros((40, 60), bool)
    mask[15:25, 10:50] = True  # 40 x 10 px
    (path,) = centre_line_paths(mask)
    assert path_length(path) == pytest.approx(40.0, rel=0.03)


def test_worn_dash_whose_end_splits_in_two_prongs_is_one_line() -> None:
    """A 2 m x 15 cm dash at 0.5 cm/px with a 50 cm slot worn down the middle of one end: one line, 2 m."""
    labels = np.full((80, 460), ROAD, np.uint8)
    labels[25:55, 30:430] = WHITE
    labels[36:44, 330:430] = ROAD  # two prongs of 5.5 cm, 50 cm long
    ((line, length, _),) = export_centre_lines(labels, 0.5, "white_marking")
    assert line.geom_type == "LineString" and length == pytest.approx(2.0, rel=0.03)
