"""A mask's surround (embed) and its colour contrast with it in clustering (``cluster.contrast_weight``)."""

import cv2
import numpy as np
import pytest

from roadparse.clustering import append_statistics, cluster
from roadparse.mask_statistics import mask_colour, surround_colour

ASPHALT, PAINT, KERB = (70, 72, 75), (235, 235, 230), (190, 188, 180)


def _scene(ground: tuple[int, int, int], width: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Returns (RGB image, mask): a white strip 10 px wide on ``ground``."""
    image = np.zeros((80, width, 3), np.uint8)
    image[:] = ground
    mask = np.zeros(image.shape[:2], bool)
    mask[10:70, 40:50] = True
    image[mask] = PAINT
    return image, mask


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)


def test_the_surround_is_the_ground_around_the_mask() -> None:
    image, mask = _scene(ASPHALT)
    lab = _lab(image)
    ground = mask_colour(lab, ~mask)
    np.testing.assert_allclose(surround_colour(lab, mask, np.ones_like(mask), 8.0), ground, atol=1e-6)
    assert not np.allclose(surround_colour(lab, mask, np.ones_like(mask), 8.0), mask_colour(lab, mask))


def test_the_ring_is_width_px_wide_and_skips_padding() -> None:
    image, mask = _scene(ASPHALT)
    image[:, 60:] = KERB  # 10 px right of the strip's edge
    lab = _lab(image)
    everywhere = np.ones_like(mask)
    np.testing.assert_allclose(surround_colour(lab, mask, everywhere, 9.0), mask_colour(lab, ~mask & (image[..., 0] == ASPHALT[0])), atol=1e-6)
    assert surround_colour(lab, mask, everywhere, 12.0)[0] > surround_colour(lab, mask, everywhere, 9.0)[0]  # now reaches the kerb
    padded = image.copy()
    padded[:, :40] = 0  # zero padding beyond the frame, left of the strip
    valid = padded.any(axis=2)
    np.testing.assert_allclose(surround_colour(_lab(padded), mask, valid, 9.0), surround_colour(lab, mask, everywhere, 9.0), atol=1e-6)


def test_a_mask_without_surround_has_no_contrast() -> None:
    image = np.full((20, 20, 3), 90, np.uint8)
    mask = np.ones((20, 20), bool)
    lab = _lab(image)
    np.testing.assert_array_equal(surround_colour(lab, mask, mask, 5.0), mask_colour(lab, mask))
    assert np.all(surround_colour(lab, np.zeros_like(mask), mask, 5.0) == 0)


def test_a_row_does_not_depend_on_the_arrays_memory() -> None:
    image, mask = _scene(ASPHALT)
    lab = _lab(image)
    shifted = np.empty((lab.size + 1,), np.uint8)[1:].reshape(lab.shape)  # another alignment
    shifted[:] = lab
    a = surround_colour(lab, mask, np.ones_like(mask), 8.0)
    b = surround_colour(shifted, np.asfortranarray(mask), np.ones_like(mask), 8.0)
    assert a.tobytes() == b.tobytes()


def test_contrast_separates_one_paint_on_two_grounds() -> None:
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 40)
    rows, colours, surrounds = [], [], []
    for label in truth:  # the same white strip, on asphalt (a marking) or beside a bright kerb (a rail)
        image, mask = _scene(ASPHALT if label == 0 else KERB)
        noisy = np.clip(image.astype(int) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
        lab = _lab(noisy)
        colours.append(mask_colour(lab, mask))
        surrounds.append(surround_colour(lab, mask, np.ones_like(mask), 10.0))
        rows.append(rng.normal(size=16) + 4)  # deep features that see neither
    features = np.asarray(rows, np.float32)
    colour, contrast = np.asarray(colours), np.asarray(colours) - np.asarray(surrounds)
    blind = cluster(append_statistics(features, colour, 1.0), "kmeans", 2, seed=0).labels
    seeing = cluster(append_statistics(features, colour, 1.0, contrast=contrast, contrast_weight=1.0), "kmeans", 2, seed=0).labels
    agree = lambda labels: max(np.mean(labels == truth), np.mean(labels != truth))  # noqa: E731
    assert agree(seeing) == 1.0 and agree(blind) < 0.8


def test_contrast_block_is_weighted_and_checked() -> None:
    features = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    contrast = np.full((30, 6), 0.5, np.float32)
    out = append_statistics(features, None, 0.0, contrast=contrast, contrast_weight=2.0)
    assert out.shape == (30, 14) and np.all(out[:, 8:] == 1.0)
    assert append_statistics(features, None, 0.0, contrast=contrast, contrast_weight=0.0) is features
    with pytest.raises(ValueError, match="5 contrast rows for 30 feature rows"):
        append_statistics(features, None, 0.0, contrast=contrast[:5], contrast_weight=1.0)
