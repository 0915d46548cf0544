"""The per-tile crops and mask statistics (roadparse.crops, roadparse.mask_statistics) against the
per-mask code they replaced (tests/embed_reference.py), on rendered road tiles."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from tests import embed_reference as reference

from roadparse.crops import crop_masks
from roadparse.mask_statistics import (
    MaskStack,
    Texture,
    colour_statistics,
    segment_sums,
    shape_statistics,
    surround_statistics,
)
from roadparse.models.offline_masks import segment_felzenszwalb
from roadparse.synth.scene import render_tile


def _tile_and_masks(gsd_cm: float, size: int = 160, seed: int = 0, tiling_only: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Returns a rendered (size, size, 3) road tile whose left columns are zero padding, and its masks:
    a Felzenszwalb tiling, then (unless ``tiling_only``) overlapping discs, a mask touching the border,
    one pixel and an empty mask."""
    image, _ = render_tile(np.random.default_rng(seed), size=size, gsd_cm=gsd_cm)
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    image[:, :6] = 0  # padding beyond the frame
    labels = segment_felzenszwalb(image, scale=200, sigma=0.8, min_size=40)
    masks = [labels == label for label in np.unique(labels)]
    if tiling_only:
        return image, masks
    yy, xx = np.mgrid[:size, :size]
    masks += [(yy - 50) ** 2 + (xx - 60) ** 2 < 30**2, (yy - 70) ** 2 + (xx - 80) ** 2 < 25**2]  # overlapping
    masks += [(yy > size - 5) & (xx > size // 3)]  # a strip along the bottom edge
    single = np.zeros((size, size), bool)
    single[3, 100] = True
    masks += [single, np.zeros((size, size), bool)]
    return image, masks


@pytest.mark.parametrize(("gsd_cm", "seed", "tiling_only"), [(0.25, 0, False), (1.0, 1, False), (3.0, 2, False), (1.0, 3, True)])
def test_per_tile_statistics_equal_the_per_mask_ones(gsd_cm: float, seed: int, tiling_only: bool) -> None:
    image, masks = _tile_and_masks(gsd_cm, seed=seed, tiling_only=tiling_only)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    valid = image.any(axis=2)
    stack = MaskStack.from_masks(iter(masks))
    assert len(stack) == len(masks) > 10 and (stack.labels is not None) == tiling_only
    width_px = 25.0 / gsd_cm
    texture, old_texture = Texture(lab, valid, gsd_cm), reference.Texture(lab, valid, gsd_cm)
    colours, surrounds = colour_statistics(lab, stack), surround_statistics(lab, stack, valid, width_px)
    shapes, textures = shape_statistics(stack, gsd_cm), texture.of_stack(stack)
    for i, mask in enumerate(masks):
        np.testing.assert_array_equal(colours[i], reference.mask_colour(lab, mask))
        np.testing.assert_array_equal(surrounds[i], reference.surround_colour(lab, mask, valid, width_px))
        np.testing.assert_array_equal(shapes[i], reference.mask_shape(mask, gsd_cm))
        np.testing.assert_allclose(textures[i], old_texture.of(mask), rtol=1e-6, atol=1e-6)
    if not tiling_only:  # the last mask is empty
        assert not colours[-1].any() and not surrounds[-1].any() and not shapes[-1].any() and not textures[-1].any()


@pytest.mark.parametrize("mask_background", [False, True])
def test_crops_cut_per_tile_equal_the_per_mask_ones(mask_background: bool) -> None:
    image, masks = _tile_and_masks(1.0)
    stack = MaskStack.from_masks(masks)
    recorded = np.array([reference_box(mask) for mask in masks])
    crops = crop_masks(image, stack, recorded, 32, mask_background)
    assert crops.shape == (len(masks), 32, 32, 3) and crops.dtype == np.uint8
    height, width = image.shape[:2]
    for i, mask in enumerate(masks):
        box = reference.padded_box(tuple(recorded[i]), reference.MIN_CROP_SIDE, width, height)
        np.testing.assert_array_equal(crops[i], reference.crop_mask(image, box, 32, mask if mask_background else None))


def reference_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Returns the tight box of a mask as the masks stage records it (zeros when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def test_a_stack_reads_any_box_of_its_masks_and_checks_their_size() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    mask[4, 10] = True
    stack = MaskStack.from_masks([mask, np.zeros((10, 12), bool)])
    assert stack.boxes.tolist() == [[3, 2, 11, 5], [0, 0, 0, 0]] and stack.counts.tolist() == [19, 0]
    for box in [(0, 0, 12, 10), (5, 3, 12, 10), (-2, -1, 4, 3), (11, 5, 12, 10)]:
        x0, y0, x1, y1 = box
        padded = np.pad(mask, 2)[y0 + 2 : y1 + 2, x0 + 2 : x1 + 2]
        np.testing.assert_array_equal(stack.window(0, box), padded)
    assert not stack.window(1, (0, 0, 12, 10)).any()
    np.testing.assert_array_equal(np.sort(stack.flat_index), np.flatnonzero(mask))
    with pytest.raises(ValueError, match=r"mask 1 is \(9, 12\), the image is \(10, 12\)"):
        MaskStack.from_masks([mask, mask[:9]])


def test_segment_sums_leave_empty_runs_at_zero() -> None:
    values = np.arange(10, dtype=np.int64)
    assert segment_sums(values, np.array([0, 3, 0, 0, 7, 0])).tolist() == [0, 3, 0, 0, 42, 0]
    assert segment_sums(values[:0], np.array([0, 0])).tolist() == [0, 0]


def test_a_row_does_not_depend_on_its_neighbours_in_the_stack() -> None:
    image, masks = _tile_and_masks(1.0)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    valid = image.any(axis=2)
    whole = MaskStack.from_masks(masks)
    alone = [MaskStack.from_masks([mask]) for mask in masks[::5]]
    texture = Texture(lab, valid, 1.0)
    for rows, single in zip(range(0, len(masks), 5), alone, strict=True):
        for function in (lambda s: colour_statistics(lab, s), lambda s: surround_statistics(lab, s, valid, 25.0),
                         lambda s: shape_statistics(s, 1.0), texture.of_stack):
            assert function(whole)[rows].tobytes() == function(single)[0].tobytes()


def test_the_stage_prepares_tiles_ahead_in_order_and_stops_when_closed() -> None:
    from contextlib import closing

    from roadparse.stages.embed import TileCrops, _prepared_ahead

    def entry(n: int) -> TileCrops:
        return TileCrops(None, list(range(n)), np.zeros((n, 4)), np.zeros(n), np.zeros((n, 1, 1, 3), np.uint8))  # type: ignore[arg-type]

    made: list[int] = []

    def prepare(tile: int) -> TileCrops | Exception:
        made.append(tile)
        return ValueError(f"tile {tile}") if tile == 3 else entry(tile % 4 + 1)

    items = list(_prepared_ahead(list(range(8)), prepare, limit=4))  # type: ignore[arg-type]
    assert [tile for tile, _ in items] == list(range(8)) and made == list(range(8))
    assert isinstance(items[3][1], ValueError) and items[5][1].count == 2  # type: ignore[union-attr]
    made.clear()
    with closing(_prepared_ahead(list(range(100)), prepare, limit=3)) as prepared:  # type: ignore[arg-type]
        next(prepared)
    assert len(made) < 10 and not [t for t in threading.enumerate() if t.name == "embed-prepare"]

    def broken(tile: int) -> TileCrops | Exception:
        if tile == 2:
            raise RuntimeError("a bug, not a bad tile")
        return entry(1)

    got = []
    with pytest.raises(RuntimeError, match="a bug"):
        for tile, _ in _prepared_ahead(list(range(5)), broken, limit=8):  # type: ignore[arg-type]
            got.append(tile)
    assert got == [0, 1]
