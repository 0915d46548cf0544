"""Self-training that never makes the result worse: round 0 comparisons, per-class relabel thresholds and the
data-scaled training budget (issue #12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tests.test_train import make_workspace, small_settings, tiny_segformer_dir

from roadparse.config import load_settings
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png, write_label_png
from roadparse.stages.selftrain.budget import auto_iterations, training_budget
from roadparse.stages.selftrain.selection import best_round, lost_classes, stop_reason, verdict
from roadparse.stages.selftrain.thresholds import (
    class_thresholds,
    confidence_histograms,
    confident_labels,
    quantise_confidence,
)

torch.set_num_threads(1)
NAMES = ("road", "cone")


def _dev(miou: float, road: float, cone: float) -> dict:
    return {"miou": miou, "iou": {"road": road, "cone": cone}}


# --- never worse: the pseudo-labels are round 0 -------------------------------------------------


def test_training_made_to_fail_keeps_the_pseudo_labels_and_says_so(tmp_path: Path) -> None:
    from roadparse.cli import main

    workspace, gt_dir = make_workspace(tmp_path, n_tiles=2)
    backbone = tiny_segformer_dir(tmp_path)
    # a broken lr (0): round 1 is the random network; the budget comes from the data (tiny tiles: the lower bound, 1)
    args = ["train", str(workspace.root), "--dev-labels", str(gt_dir), "--set", f"selftrain.backbone={backbone}",
            "--set", "selftrain.pretrained=false", "--set", "selftrain.lr=0", "--set", "selftrain.rounds=2",
            "--set", "selftrain.iterations=auto", "--set", "selftrain.budget_crops_per_tile=2",
            "--set", "selftrain.budget_crops_per_class=0", "--set", "selftrain.budget_min_iterations=1",
            "--set", "selftrain.scale_range=[600, 800]", "--set", "selftrain.crop_size=32", "--set", "selftrain.batch_size=2",
            "--set", "selftrain.device=cpu", "--set", "predict.window=32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = workspace.read_manifest("selftrain")["summary"]
    assert summary["best_round"] == 0 and summary["model"] is None and summary["labels"] == "pseudolabel/labels"
    assert summary["rounds_run"] == 1 and "pseudo-labels" in summary["stopped_by"]  # no student of a worse teacher
    assert summary["dev_miou"]["0"] > summary["dev_miou"]["1"]
    assert summary["verdict"].startswith("No trained round beat the pseudo-labels on dev")
    assert "To change:" in summary["verdict"] and "selftrain.lr" in summary["verdict"]  # the loss did not fall
    assert "training budget per round: 1 iterations x batch 2 = 2 crops" in result.output  # tiny tiles: the lower bound
    assert "best model: none (the pseudo-labels are best)" in result.output and summary["verdict"] in result.output
    assert summary["budget"]["iterations"] == 1


def test_stop_rule_and_best_round_compare_with_round_zero() -> None:
    zero = {"round": 0, "dev": _dev(70.0, 90.0, 50.0)}
    worse = {"round": 1, "dev": _dev(60.0, 95.0, 25.0), "lost_classes": []}
    assert "pseudo-labels (round 0)" in stop_reason(1, 2, worse, [zero], 0.001)
    assert best_round([zero, worse]) == 0
    better = {"round": 1, "dev": _dev(80.0, 95.0, 65.0), "lost_classes": []}
    assert stop_reason(1, 2, better, [zero], 0.001) is None
    student = {"round": 2, "dev": _dev(79.0, 95.0, 63.0), "lost_classes": []}
    assert "round 1" in stop_reason(2, 3, student, [zero, better], 0.001)
    assert best_round([zero, better, student]) == 1
    assert "+10.00 points over the pseudo-labels" in verdict([zero, better, student], 1)
    # without dev scores nothing is compared with round 0: the last round is kept
    assert best_round([{"round": 1, "dev": None}, {"round": 2, "dev": None}]) == 2


def test_a_round_that_loses_a_class_is_flagged_stops_and_is_not_chosen() -> None:
    zero = {"round": 0, "dev": _dev(70.0, 90.0, 50.0)}
    scores = _dev(75.0, 99.0, 20.0)  # higher mIoU, but the cone (50 -> 20) is gone
    assert lost_classes(zero["dev"], scores) == ["cone"]
    assert lost_classes(zero["dev"], _dev(75.0, 99.0, 30.0)) == []  # 30 >= 25: not lost
    flagged = {"round": 1, "dev": scores, "lost_classes": ["cone"], "training": {"first_loss": 2.0, "final_loss": 1.0}}
    assert "lost classes" in stop_reason(1, 2, flagged, [zero], 0.001)
    assert best_round([zero, flagged]) == 0
    text = verdict([zero, flagged], 0)
    assert "round 1 lost cone" in text and "selftrain.relabel_class_quantile" in text


def test_the_advice_says_whether_the_round_reproduced_its_training_labels() -> None:
    zero = {"round": 0, "dev": _dev(70.0, 90.0, 50.0)}
    training = {"first_loss": 2.0, "final_loss": 0.5, "iterations": 282}
    underfit = {"round": 1, "dev": _dev(60.0, 90.0, 30.0), "lost_classes": [], "training": training,
                "fit": {"iou": {"road": 93.3, "cone": 30.9}, "miou": 62.1}}
    text = verdict([zero, underfit], 0)
    assert "round 1 reproduces only 62.1 % mIoU of the labels it was trained on (cone 30.9 %)" in text
    assert "more iterations (selftrain.iterations, now 282" in text and "split or discard it" in text
    fitted = dict(underfit, fit={"iou": {"road": 99.0, "cone": 88.0}, "miou": 93.5})
    text = verdict([zero, fitted], 0)
    assert "reproduces the labels it was trained on (93.5 % mIoU" in text and "selftrain.iterations" not in text
    assert "improve the pseudo-labels themselves" in text
    old_round = {key: value for key, value in underfit.items() if key != "fit"}  # recorded before the fit was
    assert "train longer (selftrain.iterations, now 282" in verdict([zero, old_round], 0)


def test_label_fit_is_per_class_iou_against_the_training_labels(tmp_path: Path) -> None:
    from roadparse.artifacts import Tile
    from roadparse.stages.selftrain import label_fit

    classes = load_classes()
    before, after = tmp_path / "before", tmp_path / "after"
    trained = np.zeros((10, 10), np.uint8)
    trained[:, 8:] = 5  # 20 cone pixels
    trained[0, 0] = IGNORE_INDEX  # unlabelled: not compared
    relabelled = np.zeros((10, 10), np.uint8)
    relabelled[:, 9:] = 5  # reproduces 10 of the 20
    for folder, label in ((before, trained), (after, relabelled)):
        write_label_png(folder / "t0.png", label, classes)
    tiles = [Tile(id="t0", path=tmp_path / "t0.png", frame="f.jpg", offset=(0, 0), size=(10, 10), valid=(10, 10))]
    fit = label_fit(before, after, tiles, classes.names)
    assert fit is not None and fit["agreement"] == pytest.approx(89 / 99)
    assert fit["iou"]["traffic_cone"] == 50.0 and fit["iou"]["road"] == pytest.approx(100 * 79 / 89, abs=0.01)
    assert fit["iou"]["guardrail"] is None and fit["miou"] == pytest.approx((50.0 + 100 * 79 / 89) / 2, abs=0.01)
    assert label_fit(before, tmp_path / "none", tiles, classes.names) is None


# --- every class survives relabelling --------------------------------------------------------


def test_per_class_thresholds_keep_every_class() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (64, 64)).astype(np.uint8)
    probability = np.where(labels == 2, rng.uniform(0.5, 0.8, labels.shape), rng.uniform(0.91, 1.0, labels.shape))
    confidence = quantise_confidence(probability)
    histograms = confidence_histograms(labels, confidence, 3)
    one_threshold = confident_labels(labels, confidence, class_thresholds(histograms, 0.9, None))
    assert not (one_threshold == 2).any()  # a single 0.9 drops the unsure class whole
    thresholds = class_thresholds(histograms, 0.9, 0.5)
    assert thresholds[0] == thresholds[1] == 0.9 and 0.6 < thresholds[2] < 0.7
    kept = confident_labels(labels, confidence, thresholds)
    assert (kept == 2).sum() >= 0.5 * (labels == 2).sum()  # at least (1 - q) of the unsure class
    for c in (0, 1):
        assert (kept == c).sum() == (labels == c).sum()  # the sure classes keep their 0.9


def test_stage_relabels_with_per_class_thresholds(tmp_path: Path) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, n_tiles=2)
    # near-uniform probabilities after 2 iterations: a global 0.99 would unlabel every pixel
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=2, rounds=1, relabel_confidence=0.99,
                              relabel_class_quantile=0.5)
    manifest = selftrain.run(workspace, settings)
    round_1 = workspace.root / "selftrain" / "round_1"
    full, confident = set(), set()
    for tile in ("f0_t0", "f1_t0"):
        full |= set(np.unique(read_label_png(round_1 / "labels" / f"{tile}.png")).tolist())
        confident |= set(np.unique(read_label_png(round_1 / "confident_labels" / f"{tile}.png")).tolist())
    assert confident - {IGNORE_INDEX} == full - {IGNORE_INDEX}  # relabelling dropped no class
    relabel = manifest["items"]["round_1"]["relabel"]
    predicted = {name for name, share in relabel["kept"].items() if share is not None}
    assert predicted and all(relabel["kept"][name] >= 0.5 for name in predicted)
    assert all(relabel["thresholds"][name] < 0.99 for name in predicted)


# --- a training budget that scales with the data ------------------------------------------------


def test_auto_budget_scales_with_tiles_and_classes() -> None:
    train = load_settings(None, ["selftrain.iterations=auto", "selftrain.batch_size=4"]).selftrain
    assert auto_iterations(train, 51, 7) == 306  # ceil(24 x 51 / 4): the demo's 300 iterations
    assert auto_iterations(train, 120, 7) == 720
    assert auto_iterations(train, 2, 7) == 263  # 150 crops per class x 7 classes
    capped = train.model_copy(update={"budget_max_iterations": 500})
    assert auto_iterations(capped, 120, 7) == 500
    budget = training_budget(train, [(800, 800)] * 51, 7, 256, 0.5)
    assert budget.iterations == 306 and budget.relabel_windows == 51 * 36
    assert "306 iterations x batch 4 = 1224 crops (24.0 per tile) on 51 tiles, 7 classes" in budget.describe()
    # the same ground cut into 2 m tiles at 0.5 cm/px (400 px): the same budget, not four times it
    assert training_budget(train, [(400, 400)] * 204, 7, 256, 0.5).iterations == 306
    explicit = training_budget(load_settings().selftrain, [(800, 800)], 7, 512, 0.25)
    assert explicit.iterations == 80000 and "explicitly" in explicit.rule
    assert json.dumps(load_settings(None, ["selftrain.iterations=auto"]).selftrain.model_dump(mode="json"))
