import numpy as np
import pytest
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.io.labels import load_classes, write_label_png
from roadparse.metrics import (
    confusion_matrix,
    evaluate_pairs,
    hungarian_match,
    majority_match,
    scores,
    weakest_class,
)


def test_hand_computed_iou_miou_pa():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 0]], np.uint8)
    conf = confusion_matrix(pred, gt, 2, 2)
    # class 0: TP 3, FP 1 (gt 1 predicted 0 at [1,2]), FN 1 -> 3/5
    # class 1: TP 2, FP 1, FN 1 -> 2/4
    result = scores(conf, ["a", "b"])
    assert result["iou"]["a"] == pytest.approx(60.0)
    assert result["iou"]["b"] == pytest.approx(50.0)
    assert result["miou"] == pytest.approx(55.0)
    assert result["pixel_accuracy"] == pytest.approx(100 * 5 / 7)
    assert result["pixels"] == 7


def test_unlabelled_predictions_count_as_errors():
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 255, 1, 1]], np.uint8)
    result = scores(confusion_matrix(pred, gt, 2, 2), ["a", "b"])
    assert result["iou"]["a"] == pytest.approx(50.0)
    assert result["pixel_accuracy"] == pytest.approx(75.0)
    assert result["unlabelled"] == pytest.approx(25.0)


def test_weakest_class_says_where_its_pixels_went():
    # truth: 6 road, 5 sealing; sealing: 2 right, 2 predicted road, 1 unlabelled; 1 road predicted sealing
    gt = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]], np.uint8)
    pred = np.array([[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 255]], np.uint8)
    result = evaluate_pairs([("x", pred, gt)], ["road", "sealing"])
    note = weakest_class(result, ["road", "sealing"])
    assert note.startswith("sealing is the weakest class (IoU 33.3 %)")  # 2 / (2 + 1 + 3)
    assert "40.0 % of its pixels are labelled road" in note
    assert "33.3 % of the pixels labelled sealing are road" in note


def test_gt_vs_gt_is_perfect():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 7, (30, 40)).astype(np.uint8)
    result = evaluate_pairs([("x", gt, gt)], load_classes().names)
    assert result["scores"]["miou"] == 100.0 and result["scores"]["pixel_accuracy"] == 100.0


def test_errors_for_sizes_and_ids():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2, 2)
    with pytest.raises(ValueError, match=r"unknown ids \[7\]"):
        confusion_matrix(np.full((2, 2), 7), np.zeros((2, 2)), 2, 2)
    with pytest.raises(ValueError, match="ground truth has unknown class ids"):
        confusion_matrix(np.zeros((2, 2)), np.full((2, 2), 9), 2, 2)


def test_hungarian_and_majority_known_answers():
    # rows: clusters 0..3, cols: classes 0..2
    conf = np.array([[0, 10, 0], [8, 0, 1], [5, 0, 0], [0, 2, 9]])
    assert hungarian_match(conf) == {0: 1, 1: 0, 3: 2}
    assert majority_match(conf) == {0: 1, 1: 0, 2: 0, 3: 2}


def test_cluster_matching_over_a_set():
    gt = np.array([[0, 0, 1, 1], [2, 2, 1, 1]], np.uint8)
    clusters = np.array([[7, 7, 3, 3], [9, 9, 4, 4]], np.uint8)  # 3 and 4 both class 1
    hungarian = evaluate_pairs([("x", clusters, gt)], ["a", "b", "c"], matching="hungarian")
    majority = evaluate_pairs([("x", clusters, gt)], ["a", "b", "c"], matching="majority")
    assert majority["scores"]["miou"] == pytest.approx(100.0)
    assert hungarian["scores"]["iou"]["b"] == pytest.approx(50.0)  # one of 3/4 left unmatched
    assert majority["mapping"] == {"3": "b", "4": "b", "7": "a", "9": "c"}


def test_evaluate_command(tmp_path):
    classes = load_classes()
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gt = np.zeros((8, 8), np.uint8)
    gt[:, 4:] = 1
    pred = gt.copy()
    pred[0, 0] = 1
    write_label_png(tmp_path / "gt" / "t1.png", gt, classes)
    write_label_png(tmp_path / "pred" / "t1_label.png", pred, classes)
    out = tmp_path / "m.json"
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| prediction |" in result.output and out.exists() and out.with_suffix(".md").exists()
    write_label_png(tmp_path / "gt" / "t2.png", gt, classes)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")])
    assert result.exit_code != 0 and "t2.png" in result.output
