"""Clustering algorithms and merge-map logic on data with known answers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from roadparse.artifacts import read_merge_map
from roadparse.clustering import METHODS, cluster, nearest_neighbors
from roadparse.io import rle
from roadparse.io.labels import IGNORE_INDEX, load_classes
from roadparse.merge import (
    DISCARD,
    class_table,
    coverage_confusion,
    mask_histograms,
    merge_map_yaml,
    paint_masks,
    suggest_from_histograms,
    suggest_zero_shot,
    tile_coverage,
)
from roadparse.workspace import atomic_write_text


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    features, truth = make_blobs(600, n_features=16, centers=5, cluster_std=0.8, random_state=1)
    return features.astype(np.float32), truth


@pytest.mark.parametrize("method", METHODS)
def test_methods_recover_separated_blobs(method: str, blobs: tuple[np.ndarray, np.ndarray]) -> None:
    features, truth = blobs
    result = cluster(features, method, 5, seed=0, n_neighbors=10)
    assert adjusted_rand_score(truth, result.labels) > 0.98
    assert result.labels.shape == (600,) and result.distances.shape == (600,)
    assert np.all(result.distances >= 0)
    assert result.info["sizes"] == np.bincount(result.labels, minlength=5).tolist()


@pytest.mark.parametrize("method", ["spectral", "kmedoids", "agglomerative"])
def test_large_n_extension_path(method: str) -> None:
    features, truth = make_blobs(3000, n_features=24, centers=6, cluster_std=1.0, random_state=2)
    result = cluster(
        features.astype(np.float32), method, 6, seed=0, sample_size=500, n_neighbors=10
    )
    assert result.info.get("fit_points") == 500
    assert adjusted_rand_score(truth, result.labels) > 0.97


def test_deterministic_by_seed(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = blobs
    noisy = features + np.random.default_rng(0).normal(0, 3, features.shape).astype(np.float32)
    first = cluster(noisy, "spectral", 8, seed=3, sample_size=300, n_neighbors=8)
    second = cluster(noisy, "spectral", 8, seed=3, sample_size=300, n_neighbors=8)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.distances, second.distances)


def test_typical_members_are_nearest_the_centre(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = blobs
    result = cluster(features, "spectral", 5, seed=0, normalize=False, n_neighbors=10)
    for cluster_id in range(5):
        members = features[result.labels == cluster_id]
        dist = result.distances[result.labels == cluster_id]
        centre = members.mean(axis=0)
        assert np.linalg.norm(members[np.argmin(dist)] - centre) <= np.median(
            np.linalg.norm(members - centre, axis=1)
        )


def test_too_few_points_names_the_numbers() -> None:
    with pytest.raises(ValueError, match="cannot make 20 clusters from 5 points"):
        cluster(np.random.default_rng(0).normal(size=(5, 4)), "spectral", 20)


def test_nan_rows_are_listed() -> None:
    features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    features[[3, 17]] = np.nan
    with pytest.raises(ValueError, match=r"rows 3, 17"):
        cluster(features, "kmeans", 3)


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="spectral, kmeans, kmedoids, agglomerative"):
        cluster(np.zeros((10, 2)), "dbscan", 2)


def test_duplicate_and_zero_rows_warn_but_work(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate(
        [
            np.tile(rng.normal(size=(1, 8)), (40, 1)),
            rng.normal(5, 1, size=(40, 8)),
            np.zeros((5, 8)),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="roadparse.clustering"):
        result = cluster(features.astype(np.float32), "spectral", 3, seed=0, n_neighbors=5)
    assert "all zero" in caplog.text and "duplicate" in caplog.text
    assert len(set(result.labels[:40].tolist())) == 1  # identical rows end in one cluster
    assert np.isfinite(result.distances).all()


def test_nearest_neighbors_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 5)).astype(np.float32)
    idx, dist = nearest_neighbors(base, base, 4, cosine=False, exclude_self=True)
    full = ((base[:, None] - base[None]) ** 2).sum(-1)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)


# ---- merge maps ---------------------------------------------------------------------------


def _mask(shape: tuple[int, int], box: tuple[int, int, int, int], mask_id: int) -> dict:
    array = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = True
    return {"id": mask_id, "rle": rle.encode(array), "bbox": list(box), "area": int(array.sum())}


def test_merge_map_round_trip(tmp_path) -> None:
    classes = load_classes()
    suggestions = [
        {
            "cluster": 0,
            "class": "road",
            "majority": "road",
            "purity": 0.9,
            "masks": 3,
            "pixels": 10,
        },
        {
            "cluster": 1,
            "class": DISCARD,
            "majority": "other",
            "purity": 0.3,
            "masks": 1,
            "pixels": 4,
        },
        {
            "cluster": 2,
            "class": "white_marking",
            "majority": "white_marking",
            "purity": 1.0,
            "masks": 2,
        },
    ]
    path = tmp_path / "merge_map.yaml"
    atomic_write_text(path, merge_map_yaml(suggestions, classes.names, "test"))
    merge_map = read_merge_map(path, 3)
    assert merge_map == {0: "road", 1: DISCARD, 2: "white_marking"}
    table = class_table(merge_map, 3, classes)
    assert table.tolist() == [0, IGNORE_INDEX, 1]
    assert table[np.array([2, 0, 1, 0])].tolist() == [1, 0, IGNORE_INDEX, 0]


def test_merge_map_validation() -> None:
    classes = load_classes()
    with pytest.raises(ValueError, match="unknown class names \\['tree'\\]"):
        class_table({0: "road", 1: "tree"}, 2, classes)
    with pytest.raises(ValueError, match="clusters \\[1\\] are not mapped"):
        class_table({0: "road"}, 2, classes)


def test_small_mask_inside_big_one_stays_visible() -> None:
    shape = (20, 20)
    small = _mask(shape, (5, 5, 8, 8), 1)
    big = _mask(shape, (0, 0, 20, 20), 2)
    # listed small first: painting order must still put it on top
    label = paint_masks(20, 20, [small, big], [1, 0])
    assert (label[5:8, 5:8] == 1).all()
    assert (label == 0).sum() == 400 - 9
    # a discarded small mask is not painted: the big mask shows through
    label = paint_masks(20, 20, [small, big], [IGNORE_INDEX, 0])
    assert (label == 0).all()
    assert (paint_masks(20, 20, [small], [3]) == IGNORE_INDEX).sum() == 400 - 9


def test_coverage_confusion_equals_painting() -> None:
    rng = np.random.default_rng(0)
    shape = (30, 40)
    masks = [_mask(shape, (int(x), int(y), int(x) + int(w), int(y) + int(h)), i)
             for i, (x, y, w, h) in enumerate(zip(rng.integers(0, 30, 8), rng.integers(0, 20, 8), rng.integers(3, 15, 8), rng.integers(3, 12, 8), strict=True))]  # fmt: skip
    gt = rng.integers(0, 3, size=shape).astype(np.uint8)
    gt[0, :5] = IGNORE_INDEX
    coverage = tile_coverage(masks, gt, 3)
    for classes_of_masks in (
        [0, 1, 2, 0, 1, 2, 0, 1],
        [IGNORE_INDEX, 1, IGNORE_INDEX, 0, 2, 2, IGNORE_INDEX, 0],
    ):
        mask_classes = np.array(classes_of_masks, dtype=np.uint8)
        painted = paint_masks(*shape, masks, mask_classes.tolist())
        expected = np.zeros((4, 3), dtype=np.int64)
        keep = gt != IGNORE_INDEX
        np.add.at(expected, (np.where(painted == IGNORE_INDEX, 3, painted)[keep], gt[keep]), 1)
        np.testing.assert_array_equal(coverage_confusion(coverage, mask_classes, 3), expected)
    histograms = mask_histograms(coverage, len(masks))
    for i, mask in enumerate(masks):
        under = gt[rle.decode(mask["rle"]) & (gt != IGNORE_INDEX)]
        np.testing.assert_array_equal(histograms[i], np.bincount(under, minlength=3))


def test_suggest_by_majority_purity_threshold() -> None:
    names = ("road", "white_marking", "other")
    # cluster 0: pure road; cluster 1: 60/40 marking/road; cluster 2: nothing labelled
    clusters = np.array([0, 0, 1, 1, 2])
    histograms = np.array([[50, 0, 0], [40, 0, 10], [20, 30, 0], [0, 30, 20], [0, 0, 0]])
    relaxed = suggest_from_histograms(clusters, histograms, 3, names, 0.5)
    assert [s["class"] for s in relaxed] == ["road", "white_marking", DISCARD]
    assert relaxed[0]["purity"] == pytest.approx(0.9)
    assert relaxed[1]["purity"] == pytest.approx(0.6) and relaxed[1]["masks"] == 2
    strict = suggest_from_histograms(clusters, histograms, 3, names, 0.7)
    assert [s["class"] for s in strict] == ["road", DISCARD, DISCARD]
    assert strict[1]["majority"] == "white_marking"
    text = merge_map_yaml(strict, names, "majority vote")
    assert "NAMING clusters only" in text and "purity 0.60" in text


def test_suggest_zero_shot_with_fake_classifier() -> None:
    class Fake:
        def classify(self, images, labels):
            # bright crops look like markings, dark ones like road
            return np.array([[0.1, 0.9] if image.mean() > 128 else [0.8, 0.2] for image in images])

    crops = {0: [np.full((4, 4, 3), 200, np.uint8)] * 2, 1: [np.zeros((4, 4, 3), np.uint8)], 2: []}
    suggestions = suggest_zero_shot(crops, ("road", "white_marking"), Fake())
    assert [s["class"] for s in suggestions] == ["white_marking", "road", DISCARD]
    assert suggestions[0]["purity"] == pytest.approx(0.9)
