"""Mask colour statistics (embed) and their use in clustering."""

import cv2
import numpy as np
import pytest

from roadparse.clustering import append_statistics, cluster
from roadparse.mask_statistics import mask_colour


def test_mask_colour_is_lab_mean_and_std_under_the_mask():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = (255, 255, 255)
    image[:, 5:] = (250, 200, 0)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    stats = mask_colour(lab, mask)
    assert stats.shape == (6,)
    np.testing.assert_allclose(stats[:3], lab[0, 7].astype(np.float32) / 128, rtol=1e-6)
    np.testing.assert_allclose(stats[3:], 0, atol=1e-6)
    assert not np.allclose(mask_colour(lab, ~mask)[:3], stats[:3])  # white differs from yellow
    assert np.all(mask_colour(lab, np.zeros((10, 10), bool)) == 0)


def test_colour_separates_what_the_features_cannot():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 16)).astype(np.float32) + 5  # one blob: colour-blind features
    truth = np.repeat([0, 1], 60)
    colour = np.zeros((120, 6), np.float32)
    colour[truth == 1, 2] = 1.0  # "yellow" b channel
    blind = cluster(features, "kmeans", 2, seed=0).labels
    seeing = cluster(append_statistics(features, colour, 1.0), "kmeans", 2, seed=0).labels
    agree = lambda labels: max(np.mean(labels == truth), np.mean(labels != truth))  # noqa: E731
    assert agree(seeing) == 1.0 and agree(blind) < 0.8
    assert append_statistics(features, colour, 0.0) is features
    with pytest.raises(ValueError, match="colour rows"):
        append_statistics(features, colour[:5], 1.0)
