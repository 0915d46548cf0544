"""One mask per object across tiles (known answers on constructed masks) and tiling without double work."""

from __future__ import annotations

import numpy as np
import pytest

from roadparse.geometry import TileWindow, axis_windows, processed_share, tile_box, tile_boxes
from roadparse.tile_merge import TilePlace, group_objects, match_masks

# --- tiling: no frame pixel twice ---------------------------------------------


@pytest.mark.parametrize("extent", [100, 799, 800, 801, 1000, 1600, 2400, 2401, 5304, 7952])
@pytest.mark.parametrize("tile", [200, 800])
def test_grow_tiles_every_pixel_exactly_once(extent, tile):
    windows = tile_box((0, 0, extent, 300), (extent, 300), tile, 0, "grow")
    assert processed_share(windows, (extent, 300)) == pytest.approx(1.0)
    covered = np.zeros((300, extent), np.int32)
    for w in windows:
        x0, y0, x1, y1 = w.frame_box()
        covered[y0:y1, x0:x1] += 1
    assert covered.min() == 1 and covered.max() == 1


def test_grow_small_frame_is_one_padded_tile_and_shift_was_double_work():
    assert axis_windows(0, 500, 500, 800, 0, "grow") == [(0, 800, 500)]
    assert tile_box((0, 0, 1000, 500), (1000, 500), 800, 0, "grow")[1].valid_width == 200
    shifted = tile_box((0, 0, 1000, 1300), (1000, 1300), 800, 0, "shift")
    assert processed_share(shifted, (1000, 1300)) == pytest.approx(4 * 800 * 800 / (1000 * 1300))  # 197 %
    grown = tile_box((0, 0, 1000, 1300), (1000, 1300), 800, 0, "grow")
    assert processed_share(grown, (1000, 1300)) == pytest.approx(1.0)


def test_grow_centres_a_small_box_inside_the_frame_and_covers_a_long_one():
    assert axis_windows(1000, 1200, 5000, 800, 0, "grow") == [(700, 800, 800)]  # centred, real context
    assert axis_windows(4800, 5000, 5000, 800, 0, "grow") == [(4200, 800, 800)]  # moved inside the frame
    windows = axis_windows(300, 1400, 1600, 800, 0, "grow")  # 1100 px box: two whole tiles, inside the frame
    assert windows == [(0, 800, 800), (800, 800, 800)]


def test_grow_with_overlap_processes_only_the_configured_overlap():
    windows = tile_box((0, 0, 2000, 800), (2000, 800), 800, 100, "grow")
    xs = [w.x for w in windows]
    assert all(b - a == 700 for a, b in zip(xs, xs[1:], strict=False))
    overlap_share = (len(windows) - 1) * 100 * 800 / (2000 * 800)
    assert processed_share(windows, (2000, 800)) <= 1.0 + overlap_share + 1e-9


def _coverage(windows: list[TileWindow], frame_size: tuple[int, int]) -> np.ndarray:
    covered = np.zeros((frame_size[1], frame_size[0]), np.int32)
    for w in windows:
        x0, y0, x1, y1 = w.frame_box()
        covered[y0:y1, x0:x1] += 1
    return covered


def _all_windows(groups: list[tuple[list[tuple[int, int, int, int]], list[TileWindow]]]) -> list[TileWindow]:
    return [w for _, windows in groups for w in windows]


def test_two_boxes_whose_grids_overlap_are_tiled_by_one_grid():
    frame = (3000, 1000)
    boxes = [(0, 0, 900, 400), (1000, 0, 1900, 400)]
    per_box = [w for box in boxes for w in tile_box(box, frame, 800, 0, "grow")]
    assert _coverage(per_box, frame).max() == 2  # per box: [0, 1600) and [650, 2250) share 950 columns
    groups = tile_boxes(boxes, frame, 800, 0, "grow")
    assert [members for members, _ in groups] == [boxes]
    windows = _all_windows(groups)
    assert [(w.x, w.y) for w in windows] == [(0, 0), (800, 0), (1600, 0)]
    covered = _coverage(windows, frame)
    assert covered.max() == 1 and processed_share(windows, frame) == pytest.approx(3 * 800 * 800 / 3e6)
    for x0, y0, x1, y1 in boxes:
        assert covered[y0:y1, x0:x1].min() == 1  # every box pixel tiled


def test_diagonal_boxes_keep_only_cells_meeting_a_box_and_distant_boxes_stay_as_before():
    frame = (4000, 4000)
    boxes = [(0, 0, 1000, 1000), (1100, 1100, 2100, 2100)]
    windows = _all_windows(tile_boxes(boxes, frame, 800, 0, "grow"))
    covered = _coverage(windows, frame)
    assert covered.max() == 1
    for x0, y0, x1, y1 in boxes:
        assert covered[y0:y1, x0:x1].min() == 1
    grid = tile_box((0, 0, 2100, 2100), frame, 800, 0, "grow")
    assert len(windows) < len(grid)  # the empty corners of the enclosing box are not tiled
    apart = [(0, 0, 500, 500), (2500, 2500, 3000, 3000)]
    groups = tile_boxes(apart, frame, 800, 0, "grow")
    assert [w for _, ws in groups for w in ws] == [w for box in apart for w in tile_box(box, frame, 800, 0, "grow")]


@pytest.mark.parametrize("seed", range(20))
def test_random_boxes_never_tile_a_pixel_twice_and_cover_every_box(seed):
    rng = np.random.default_rng(seed)
    frame = (int(rng.integers(300, 3000)), int(rng.integers(300, 3000)))
    boxes = []
    for _ in range(int(rng.integers(1, 6))):
        x0, y0 = int(rng.integers(0, frame[0] - 1)), int(rng.integers(0, frame[1] - 1))
        boxes.append((x0, y0, int(rng.integers(x0 + 1, frame[0] + 1)), int(rng.integers(y0 + 1, frame[1] + 1))))
    windows = _all_windows(tile_boxes(boxes, frame, 400, 0, "grow"))
    covered = _coverage(windows, frame)
    assert covered.max() == 1 and processed_share(windows, frame) <= 1.0
    for x0, y0, x1, y1 in boxes:
        assert covered[y0:y1, x0:x1].min() == 1


def test_single_box_and_other_rules_are_unchanged():
    frame = (1000, 1300)
    assert _all_windows(tile_boxes([(10, 20, 990, 1290)], frame, 800)) == tile_box((10, 20, 990, 1290), frame, 800)
    boxes = [(0, 0, 900, 400), (500, 200, 1000, 1300)]
    for rule in ("shift", "pad", "drop"):
        groups = tile_boxes(boxes, frame, 800, 0, rule)
        assert groups == [([box], tile_box(box, frame, 800, 0, rule)) for box in boxes]


# --- masks across tiles --------------------------------------------------------


def _stack(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks)


def test_mask_continued_across_a_vertical_border_is_linked():
    left, right = TilePlace(0, 0, 10, 10), TilePlace(10, 0, 10, 10)
    bar = np.zeros((10, 20), bool)
    bar[3:6, 4:17] = True  # one bar cut by the border x = 10
    other = np.zeros((10, 10), bool)
    other[7:9, :] = True  # touches the border on the right tile's side, at other rows
    links = match_masks(left, _stack(bar[:, :10]), right, _stack(other, bar[:, 10:]))
    assert links == [(0, 1, "border")]


def test_masks_that_only_meet_at_a_border_with_different_extents_are_not_linked():
    top, bottom = TilePlace(0, 0, 10, 10), TilePlace(0, 10, 10, 10)
    a = np.zeros((10, 10), bool)
    a[5:, 0:8] = True  # 8 px on the border row
    b = np.zeros((10, 10), bool)
    b[:4, 6:10] = True  # 4 px, 2 shared: IoU 2 / 10
    assert match_masks(top, _stack(a), bottom, _stack(b), border_iou=0.5) == []
    assert match_masks(top, _stack(a), bottom, _stack(b), border_iou=0.2) == [(0, 0, "border")]


def test_duplicate_in_overlapping_tiles_is_linked_by_iou_in_the_overlap():
    first, second = TilePlace(0, 0, 12, 10), TilePlace(8, 0, 12, 10)  # 4 columns shared
    frame = np.zeros((10, 20), bool)
    frame[2:8, 8:12] = True  # an object entirely inside the overlap
    elsewhere = np.zeros((10, 12), bool)
    elsewhere[0:2, 0:2] = True
    links = match_masks(first, _stack(elsewhere, frame[:, :12]), second, _stack(frame[:, 8:]))
    assert links == [(1, 0, "duplicate")]


def test_tiles_meeting_at_a_corner_only_are_not_compared():
    a = np.ones((1, 5, 5), bool)
    assert match_masks(TilePlace(0, 0, 5, 5), a, TilePlace(5, 5, 5, 5), a) == []


def test_group_objects_is_transitive_and_keeps_singletons_out():
    # a road over three tiles (0/1 -> 1/0 -> 2/2), a marking over two (0/0 -> 1/1)
    links = [(0, 1, 1, 0), (1, 0, 2, 2), (0, 0, 1, 1)]
    assert group_objects([2, 2, 3], links) == [[(0, 0), (1, 1)], [(0, 1), (1, 0), (2, 2)]]
    assert group_objects([1, 1], []) == []
