"""The suggested merge map splits mixed clusters automatically (``cluster.suggest_split_purity``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from roadparse.artifacts import read_merge_map
from roadparse.config import load_settings
from roadparse.merge import split_mixed_suggestions, suggest_from_histograms
from roadparse.merge_split import MAX_PARTS, Split, suggest_split
from roadparse.stages import cluster, pseudolabel
from roadparse.workspace import Workspace
from test_pseudolabel import build_workspace

NAMES = ["road", "white_marking", "yellow_marking", "other"]


def _groups(sizes: list[int], classes: list[int], pixels: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (points, histograms): group g has sizes[g] points near axis g, each over pixels[g] px of classes[g]."""
    rng = np.random.default_rng(seed)
    points = np.vstack([np.eye(4)[g] + rng.normal(0, 0.02, (n, 4)) for g, n in enumerate(sizes)])
    histograms = np.vstack(
        [np.tile(np.eye(len(NAMES), dtype=np.int64)[c] * p, (n, 1)) for n, c, p in zip(sizes, classes, pixels, strict=True)]
    )
    return points, histograms


def test_two_separated_groups_of_two_classes_split_in_two_named_right() -> None:
    points, histograms = _groups([10, 6], [0, 1], [100, 100])  # 10 road masks, 6 white marking masks
    found = suggest_split(points, histograms, NAMES, min_purity=0.5, max_parts=4)
    assert found is not None
    assert found.split == Split(parts=("road", "white_marking"), seed=0, sizes=(10, 6))
    assert found.split.unsplit == "road"  # recorded for the review page, not compared
    assert found.purities == (1.0, 1.0) and found.pixels == (1000, 600)
    assert found.gain == 600  # unsplit: road, so the 600 marking pixels were named wrong


def test_pure_cluster_is_never_split() -> None:
    points, histograms = _groups([10, 6], [0, 0], [100, 100])  # two groups, both road
    assert suggest_split(points, histograms, NAMES, 0.5, 4) is None
    suggestions = suggest_from_histograms(np.zeros(16, np.int64), histograms, 1, NAMES, 0.5)
    out = split_mixed_suggestions(suggestions, np.zeros(16, np.int64), histograms, points, NAMES, 0.5, 1.0, 4)
    assert out == suggestions  # purity 1.0 is not below even the strictest threshold


def test_split_gaining_under_five_percent_stays_unsplit() -> None:
    # 40 marking px in 10040 labelled px: purity 0.996, a split would gain 0.4 %
    points, histograms = _groups([10, 2], [0, 1], [1000, 20])
    assert suggest_split(points, histograms, NAMES, 0.5, 4) is None
    clusters = np.zeros(12, np.int64)
    suggestions = suggest_from_histograms(clusters, histograms, 1, NAMES, 0.5)
    assert split_mixed_suggestions(suggestions, clusters, histograms, points, NAMES, 0.5, 0.999, 4) == suggestions
    # 10 % more would pass
    points, histograms = _groups([10, 2], [0, 1], [1000, 600])
    assert suggest_split(points, histograms, NAMES, 0.5, 4) is not None


def test_smallest_k_within_the_margin_of_the_best_parts_without_labels_and_mixed_parts() -> None:
    # road, white and an unlabelled group: k = 3 names no more pixels right than k = 2
    points, histograms = _groups([8, 6, 4], [0, 1, 0], [100, 100, 0])
    found = suggest_split(points, histograms, NAMES, 0.5, 4)
    assert found is not None and found.split.k == 2 and found.gain == 600
    # three labelled classes: k = 2 gains 800 of 2000 px (one part mixed, discarded), k = 3 all 2000
    points, histograms = _groups([8, 6, 6], [0, 1, 2], [100, 100, 100])
    found = suggest_split(points, histograms, NAMES, 0.9, 4)
    assert found is not None and found.split.k == 3 and found.gain == 2000
    assert sorted(found.split.parts) == ["road", "white_marking", "yellow_marking"]
    two = suggest_split(points, histograms, NAMES, 0.9, 2)
    assert two is not None and "discard" in two.split.parts and two.gain == 800
    # a part below min_purity is discarded; the unlabelled group's part takes the unsplit name (discard)
    points, histograms = _groups([8, 6, 4], [0, 1, 0], [100, 100, 0])
    histograms[8:14, 0] = 90  # the white group: 100 white + 90 road px per mask, purity 0.53
    found = suggest_split(points, histograms, NAMES, 0.7, 4)  # unsplit purity 1340 / 1940 = 0.69: discard
    assert found is not None and found.split.k == 2 and sorted(found.split.parts) == ["discard", "road"]
    assert found.gain == 800


def test_default_writes_todays_suggestion_and_settings_never_recluster(tmp_path: Path) -> None:
    workspace, labels_dir = _mixed_workspace(tmp_path)
    cluster.run(workspace, load_settings(overrides=MIXED), labels_dir=labels_dir)
    path = workspace.root / "cluster" / "merge_map.suggested.yaml"
    text = path.read_text().replace(str(labels_dir), "LABELS")
    warnings = [line for line in text.splitlines(keepends=True) if line.startswith("# WARNING: ")]
    # written by the code before this setting existed (+ the naming frames, + the classes it does not name)
    assert "".join(line for line in text.splitlines(keepends=True) if line not in warnings) == TODAYS_SUGGESTION
    assert warnings[0].startswith("# WARNING: white_marking: 648 labelled px, but no cluster is mostly white_marking")
    assert len(warnings) == 5  # and the four classes these labels do not show
    fingerprint = workspace.read_manifest("cluster")["fingerprint"]
    cluster.run(workspace, load_settings(overrides=[*MIXED, *SPLIT]), labels_dir=labels_dir)
    assert workspace.read_manifest("cluster")["fingerprint"] == fingerprint  # not re-clustered
    assert "split: 2" in path.read_text()


def test_suggested_split_is_painted_by_pseudolabel(tmp_path: Path) -> None:
    workspace, labels_dir = _mixed_workspace(tmp_path)
    settings = load_settings(overrides=[*MIXED, *SPLIT])
    cluster.run(workspace, settings, labels_dir=labels_dir)
    path, suggestions, _ = cluster.suggest_by_majority(workspace, settings, labels_dir)
    mixed = next(s for s in suggestions if "split" in s)
    assert mixed["class"] == "other" and [p["class"] for p in mixed["split_parts"]] == ["white_marking", "other"]
    assert mixed["split"]["sizes"] == [9, 3] and mixed["split_gain"] == 324
    text = path.read_text()
    assert "split (majority other, purity 0.88" in text and "part 0 white_marking purity 1.00, 324 px, 9 masks" in text
    merge_map = read_merge_map(path, 2)
    assert merge_map[mixed["cluster"]] == Split(parts=("white_marking", "other"), seed=0, sizes=(9, 3))
    shutil.copy(path, workspace.root / "merge_map.yaml")
    summary = pseudolabel.run(workspace, settings)["summary"]
    # 3 tiles: 3 markings of 36 px each on 48x48 road; a 16x48 'other' strip
    assert summary["pixels"]["white_marking"] == 3 * 3 * 36
    assert summary["pixels"]["road"] == 3 * (48 * 48 - 3 * 36)
    assert summary["pixels"]["other"] == 3 * 16 * 48
    assert summary["unlabelled_pixels"] == 0


def test_max_parts_setting_is_bounded_by_what_a_split_allows() -> None:
    assert load_settings(overrides=["cluster.suggest_split_max_parts=8"]).cluster.suggest_split_max_parts == MAX_PARTS
    with pytest.raises(ValueError, match="suggest_split_max_parts"):
        load_settings(overrides=[f"cluster.suggest_split_max_parts={MAX_PARTS + 1}"])
    assert load_settings().cluster.suggest_split_purity is None


MIXED = ["cluster.n_clusters=2", "cluster.method=kmeans", "cluster.gallery_size=4"]
SPLIT = ["cluster.suggest_split_purity=0.95"]


def _mixed_workspace(root: Path) -> tuple[Workspace, Path]:
    """Returns the pseudolabel test's work dir with marking features near 'other': k = 2 mixes them."""
    workspace, labels_dir = build_workspace(root)
    rng = np.random.default_rng(1)
    centres = {"road": np.eye(8)[0], "other": np.eye(8)[2], "marking": np.eye(8)[2] + 0.6 * np.eye(8)[1]}
    kinds = ["road", "other", "marking", "marking", "marking"] * 3
    features = np.stack([centres[k] + rng.normal(0, 0.02, 8) for k in kinds]).astype(np.float32)
    np.save(workspace.root / "embed" / "features_layer12.npy", features)
    return workspace, labels_dir


TODAYS_SUGGESTION = (
    "# Suggested merge map (majority vote of the ground truth in LABELS on the labels of 3 frames "
    "(frame0, frame1, frame2), min purity 0.5).\n"
    "# Ground-truth labels (if any) were used for NAMING clusters only, never for training.\n"
    "# Copy to WORKDIR/merge_map.yaml, edit, then run `roadparse pseudolabel WORKDIR`.\n"
    "# Classes: road, white_marking, yellow_marking, guardrail, crack_sealing, traffic_cone, other; "
    "'discard' leaves a cluster's pixels unlabelled (255).\n"
    "clusters:\n"
    "  0: other  # majority other, purity 0.88, 12 masks, 2628 labelled px\n"
    "  1: road  # majority road, purity 0.95, 3 masks, 6912 labelled px\n"
)
"""Written by the code before ``suggest_split_purity`` existed (commit cb267b1) for :func:`_mixed_workspace`."""


def test_cross_validated_split_needs_the_other_frames_to_agree() -> None:
    # two groups of masks (10 and 6), labelled in two frames
    points, _ = _groups([10, 6], [0, 0], [1, 1])

    def fold(class_a: int, class_b: int) -> np.ndarray:  # one frame: 100 px under each mask
        return np.vstack([_groups([10, 6], [class_a, class_b], [100, 100])[1]])

    # both frames agree: group 2 is white marking -> the split holds out of sample
    agree = np.stack([fold(0, 1), fold(0, 1)])
    found = suggest_split(points, agree.sum(axis=0), NAMES, 0.5, 4, folds=agree)
    assert found is not None and found.split.parts == ("road", "white_marking")
    assert found.gain == 2 * 600  # each frame's 600 marking px named right by the other frame's vote
    # the frames contradict each other (group 2 white in one, yellow in the other): in-sample the
    # split still names half of group 2 right, out of sample each frame's vote names the other wrong
    contradict = np.stack([fold(0, 1), fold(0, 2)])
    assert suggest_split(points, contradict.sum(axis=0), NAMES, 0.5, 4) is not None
    assert suggest_split(points, contradict.sum(axis=0), NAMES, 0.5, 4, folds=contradict) is None
