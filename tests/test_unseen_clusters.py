"""Clusters without labelled pixels in the majority-vote suggestion (``cluster.suggest_unseen``)."""

import json
from pathlib import Path

import numpy as np
import yaml

from roadparse.config import load_settings
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png, write_label_png
from roadparse.merge import DISCARD, merge_map_yaml, name_unseen_clusters, unnamed_classes
from roadparse.review.session import ReviewSession
from roadparse.stages import cluster
from test_pseudolabel import MARKINGS, SETTINGS, build_workspace

NAMES = ["road", "white_marking", "other"]


def _suggestion(cluster: int, name: str, pixels: int, masks: int = 4) -> dict:
    majority = None if not pixels else (name if name != DISCARD else "road")
    return {"cluster": cluster, "class": name, "majority": majority, "purity": 0.9 if pixels else 0.0, "pixels": pixels, "masks": masks}


def _rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 5  # four directions: clusters 0..3
    centres[3] = centres[1] + np.eye(1, 8, 4)[0]  # cluster 3 lies near cluster 1 (white marking)
    labels = np.repeat(np.arange(4), 10)
    return centres[labels] + rng.normal(scale=0.1, size=(40, 8)), labels


def test_an_unseen_cluster_takes_its_nearest_named_clusters_class() -> None:
    features, labels = _rows()
    suggestions = [_suggestion(0, "road", 500), _suggestion(1, "white_marking", 80), _suggestion(2, DISCARD, 300),
                   _suggestion(3, DISCARD, 0)]
    named = name_unseen_clusters(suggestions, labels, features)
    assert named[3]["class"] == "white_marking" and named[3]["nearest"] == 1 and 0.9 < named[3]["similarity"] <= 1
    assert [item["class"] for item in named[:3]] == ["road", "white_marking", DISCARD]  # seen clusters keep their vote
    assert suggestions[3]["class"] == DISCARD  # the input is not modified
    text = merge_map_yaml(named, NAMES, "test")
    assert yaml.safe_load(text)["clusters"][3] == "white_marking"
    assert "no labelled pixel: named after its nearest named cluster 1" in text


def test_a_mixed_cluster_is_never_a_donor_and_without_donors_nothing_changes() -> None:
    features, labels = _rows()
    suggestions = [_suggestion(0, "road", 500), _suggestion(1, DISCARD, 80), _suggestion(2, "other", 300),
                   _suggestion(3, DISCARD, 0)]
    assert name_unseen_clusters(suggestions, labels, features)[3]["nearest"] != 1  # cluster 1 was discarded as mixed
    only_unseen = [_suggestion(c, DISCARD, 0) for c in range(4)]
    assert name_unseen_clusters(only_unseen, labels, features) == only_unseen


def test_stage_names_a_cluster_the_naming_frames_do_not_label_and_the_review_page_says_so(tmp_path: Path) -> None:
    workspace, labels_dir = build_workspace(tmp_path)
    for frame in ("frame1", "frame2"):  # the naming frames' labels leave the markings unlabelled
        label = read_label_png(labels_dir / f"{frame}.png").copy()
        for x, y in MARKINGS:
            label[y : y + 6, x : x + 6] = IGNORE_INDEX
        write_label_png(labels_dir / f"{frame}.png", label, load_classes())
    base = [*SETTINGS, f"run.dev_labels={labels_dir}", 'run.dev_frames=["frame0"]', 'run.naming_frames=["frame1", "frame2"]']
    suggested = workspace.root / "cluster" / "merge_map.suggested.yaml"
    cluster.run(workspace, load_settings(overrides=base))
    discarded = [c for c, v in yaml.safe_load(suggested.read_text())["clusters"].items() if v == DISCARD]
    assert len(discarded) == 1  # the markings' cluster: no labelled pixel
    settings = load_settings(overrides=[*base, "cluster.suggest_unseen=nearest"])
    cluster.run(workspace, settings)
    named = yaml.safe_load(suggested.read_text())["clusters"]
    assert named[discarded[0]] in {"road", "other"}
    assert "named after its nearest named cluster" in suggested.read_text()
    state = ReviewSession(workspace, settings).state()
    notes = {c["id"]: c["suggestion_note"] for c in state["clusters"]}
    assert notes[discarded[0]].startswith("no labelled pixel: suggested after its nearest named cluster")
    assert [c for c, note in notes.items() if note] == [discarded[0]]
    # the class the naming frames never show is named in the map's header, the gallery and the review page
    warned = [line for line in state["suggestion_warnings"] if line.startswith("white_marking:")]
    assert warned == ["white_marking: the naming labels show no white_marking, so no cluster could be voted white_marking; "
                      "name its clusters from the gallery, or label a frame that shows white_marking"]
    assert f"# WARNING: {warned[0]}" in suggested.read_text()
    gallery = workspace.root / "cluster" / "gallery"
    assert warned[0] in json.loads((gallery / "warnings.json").read_text())
    assert "Classes the suggested map does not name" in (gallery / "index.html").read_text()
    assert not any(line.startswith(("road:", "other:")) for line in state["suggestion_warnings"])


def test_unnamed_classes_say_why_a_class_has_no_cluster() -> None:
    histograms = np.array([[90, 0, 0], [80, 5, 0], [0, 0, 50], [10, 3, 40]])  # masks' labelled px of road, white, other
    mask_clusters = np.array([0, 0, 1, 1])
    suggestions = [_suggestion(0, "road", 175), _suggestion(1, "other", 103)]
    lines = unnamed_classes(suggestions, histograms, mask_clusters, NAMES)
    assert lines == ["white_marking: 8 labelled px, but no cluster is mostly white_marking (most of them, 62%, lie in "
                     "cluster 0, which is 3% white_marking); name it from the gallery, or raise cluster.n_clusters"]
    absent = unnamed_classes(suggestions, histograms * [1, 0, 1], mask_clusters, NAMES)
    assert absent == ["white_marking: the naming labels show no white_marking, so no cluster could be voted "
                      "white_marking; name its clusters from the gallery, or label a frame that shows white_marking"]
    text = merge_map_yaml(suggestions, NAMES, "test", absent)
    assert f"# WARNING: {absent[0]}\n" in text and yaml.safe_load(text)["clusters"] == {0: "road", 1: "other"}
