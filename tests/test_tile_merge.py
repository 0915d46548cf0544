"""One mask per object across tiles (known answers on constructed masks) and tiling without double work."""

from __future__ import annotations

import numpy as np
import pytest

from roadparse.geometry import axis_windows, processed_share, tile_box
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
