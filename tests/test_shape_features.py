"""Physical mask shapes (embed) and their use in clustering (``cluster.shape_weight``)."""

import numpy as np
import pytest

from roadparse.clustering import append_statistics, cluster
from roadparse.mask_statistics import mask_shape


def _strip(gsd_cm: float, width_cm: float = 12.0, length_cm: float = 300.0) -> np.ndarray:
    width, length = round(width_cm / gsd_cm), round(length_cm / gsd_cm)
    mask = np.zeros((length + 10, width + 10), bool)
    mask[5 : 5 + length, 5 : 5 + width] = True
    return mask


@pytest.mark.parametrize("gsd_cm", [0.25, 0.5, 1.0, 2.0])
def test_a_lane_line_has_the_same_shape_at_every_gsd(gsd_cm: float) -> None:
    area_log, width_log, elongation = mask_shape(_strip(gsd_cm), gsd_cm)
    assert area_log == pytest.approx(np.log10(12 * 300), abs=1e-3)
    assert 10 ** width_log == pytest.approx(12.0, rel=0.12)  # 12 cm, whether 48 px or 6 px wide
    assert elongation == pytest.approx(np.log(300 / 12), abs=0.05)  # ln(length / width) for a rectangle


def test_blobs_are_round_and_wider_than_lines() -> None:
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 100) ** 2 + (xx - 100) ** 2 <= 80**2  # a cone's base, 40 cm across at 0.25 cm/px
    area_log, width_log, elongation = mask_shape(disc, 0.25)
    assert abs(elongation) < 0.01
    assert 10 ** width_log > 2 * 10 ** mask_shape(_strip(0.25), 0.25)[1]
    assert area_log == pytest.approx(np.log10(disc.sum() * 0.0625), abs=1e-6)
    assert np.all(mask_shape(np.zeros((5, 5), bool), 1.0) == 0)


def test_shape_separates_what_the_features_cannot() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 16)).astype(np.float32) + 5  # one blob: features that do not see size
    truth = np.repeat([0, 1], 60)
    shape = rng.normal(scale=0.05, size=(120, 3)).astype(np.float32)
    shape[truth == 1, 1] += 1.0  # wider
    blind = cluster(features, "kmeans", 2, seed=0).labels
    seeing = cluster(append_statistics(features, None, 0.0, shape, 1.0), "kmeans", 2, seed=0).labels
    agree = lambda labels: max(np.mean(labels == truth), np.mean(labels != truth))  # noqa: E731
    assert agree(seeing) == 1.0 and agree(blind) < 0.8


def test_shape_block_is_standardised_and_weighted() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 8)).astype(np.float32)
    shape = np.column_stack([rng.normal(3, 10, 50), rng.normal(-1, 0.01, 50), np.full(50, 2.0)]).astype(np.float32)
    out = append_statistics(features, None, 0.0, shape, 0.6)
    assert out.shape == (50, 11)
    np.testing.assert_allclose(np.linalg.norm(out[:, :8], axis=1), 1, rtol=1e-5)
    block = out[:, 8:]
    np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(block.std(axis=0), [0.6 / np.sqrt(3), 0.6 / np.sqrt(3), 0], rtol=1e-4, atol=1e-6)  # a constant column stays 0
    with_colour = append_statistics(features, np.ones((50, 6), np.float32), 0.5, shape, 0.6)
    assert with_colour.shape == (50, 17) and np.all(with_colour[:, 8:14] == 0.5)
    with pytest.raises(ValueError, match="3 shape rows for 50 feature rows"):
        append_statistics(features, None, 0.0, shape[:3], 1.0)
