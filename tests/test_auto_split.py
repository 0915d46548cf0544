"""Suggested splits: today's suggestion names whole clusters; a split that an earlier version suggested
(``cluster.suggest_split_purity``, removed) in an existing run still reaches the review and ``pseudolabel``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from roadparse.artifacts import read_merge_map
from roadparse.config import load_settings
from roadparse.merge_split import Split
from roadparse.stages import cluster, pseudolabel
from roadparse.workspace import Workspace
from test_pseudolabel import build_workspace

MIXED = ["cluster.n_clusters=2", "cluster.method=kmeans", "cluster.gallery_size=4"]


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
"""Written by the code before ``suggest_split_purity`` existed (commit cb267b1) and after it was removed, for
:func:`_mixed_workspace`."""


EARLIER_SPLIT = (
    "{split: 2, seed: 0, sizes: [9, 3], parts: [white_marking, other], unsplit: other}  # split (majority other, "
    "purity 0.88, 12 masks, 2628 labelled px; +324 px named right): part 0 white_marking purity 1.00, 324 px, 9 masks; "
    "part 1 other purity 1.00, 2304 px, 3 masks"
)
"""The mixed cluster's line that ``cluster.suggest_split_purity: 0.95`` wrote (before its removal) for :func:`_mixed_workspace`."""


def clustered_with_earlier_split(root: Path) -> tuple[Workspace, Path, int]:
    """Returns (work dir, labels, the mixed cluster) of :func:`_mixed_workspace` clustered with ``MIXED``, its
    suggested map holding the split an earlier version suggested for the mixed cluster."""
    workspace, labels_dir = _mixed_workspace(root)
    cluster.run(workspace, load_settings(overrides=MIXED), labels_dir=labels_dir)
    path = workspace.root / "cluster" / "merge_map.suggested.yaml"
    lines = path.read_text().splitlines(keepends=True)
    mixed = next(i for i, line in enumerate(lines) if line.startswith("  ") and ": other  # majority other" in line)
    cluster_id = int(lines[mixed].split(":")[0])
    lines[mixed] = f"  {cluster_id}: {EARLIER_SPLIT}\n"
    path.write_text("".join(lines))
    return workspace, labels_dir, cluster_id


def test_todays_suggestion_names_whole_clusters(tmp_path: Path) -> None:
    workspace, labels_dir = _mixed_workspace(tmp_path)
    cluster.run(workspace, load_settings(overrides=MIXED), labels_dir=labels_dir)
    path = workspace.root / "cluster" / "merge_map.suggested.yaml"
    text = path.read_text().replace(str(labels_dir), "LABELS")
    warnings = [line for line in text.splitlines(keepends=True) if line.startswith("# WARNING: ")]
    # written by the code before suggested splits existed (+ the naming frames, + the classes it does not name)
    assert "".join(line for line in text.splitlines(keepends=True) if line not in warnings) == TODAYS_SUGGESTION
    assert warnings[0].startswith("# WARNING: white_marking: 648 labelled px, but no cluster is mostly white_marking")
    assert len(warnings) == 5  # and the four classes these labels do not show


def test_an_earlier_suggested_split_is_painted_by_pseudolabel(tmp_path: Path) -> None:
    workspace, _, mixed = clustered_with_earlier_split(tmp_path)
    settings = load_settings(overrides=MIXED)
    path = workspace.root / "cluster" / "merge_map.suggested.yaml"
    merge_map = read_merge_map(path, 2)
    assert merge_map[mixed] == Split(parts=("white_marking", "other"), seed=0, sizes=(9, 3))
    shutil.copy(path, workspace.root / "merge_map.yaml")
    summary = pseudolabel.run(workspace, settings)["summary"]
    # 3 tiles: 3 markings of 36 px each on 48x48 road; a 16x48 'other' strip
    assert summary["pixels"]["white_marking"] == 3 * 3 * 36
    assert summary["pixels"]["road"] == 3 * (48 * 48 - 3 * 36)
    assert summary["pixels"]["other"] == 3 * 16 * 48
    assert summary["unlabelled_pixels"] == 0
