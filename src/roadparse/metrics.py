"""Segmentation metrics: confusion matrix, IoU per class, mIoU, pixel accuracy (paper eq. 1-2).

Metrics are computed from a confusion matrix summed over the whole set, never averaged
per image. Predictions whose ids are clusters rather than classes are mapped to classes
first, by Hungarian (one-to-one) or majority (many-to-one) matching on that summed matrix.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
from scipy.optimize import linear_sum_assignment


class Scores(TypedDict):
    """Scores of one labelled set (:func:`scores`), all in %."""

    iou: dict[str, float | None]
    """IoU per class (None: the class is in neither the predictions nor the ground truth)."""
    miou: float
    """Mean IoU over the classes that have one."""
    pixel_accuracy: float
    unlabelled: float
    """Share of pixels left unlabelled (255)."""
    pixels: int
    """Pixels scored."""


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, n_pred: int, n_gt: int, ignore_index: int = 255
) -> np.ndarray:
    """Returns the (n_pred + 1, n_gt) int64 confusion matrix of one image.

    Rows are predicted ids, the last row counts pixels predicted as ``ignore_index``
    (unlabelled: they are errors for IoU and accuracy, never silently dropped);
    columns are ground-truth ids. Ground-truth pixels equal to ``ignore_index`` are skipped.

    Raises:
        ValueError: shapes differ, or an id is outside ``[0, n)`` and not ``ignore_index``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    gt = gt.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = gt != ignore_index
    gt, pred = gt[keep], pred[keep]
    pred = np.where(pred == ignore_index, n_pred, pred)
    bad_gt = np.unique(gt[(gt < 0) | (gt >= n_gt)])
    if bad_gt.size:
        raise ValueError(f"ground truth has unknown class ids {bad_gt.tolist()} (classes are 0..{n_gt - 1})")
    bad_pred = np.unique(pred[(pred < 0) | (pred > n_pred)])
    if bad_pred.size:
        raise ValueError(f"prediction has unknown ids {bad_pred.tolist()} (expected 0..{n_pred - 1} or {ignore_index})")
    flat = pred * n_gt + gt
    return np.bincount(flat, minlength=(n_pred + 1) * n_gt).reshape(n_pred + 1, n_gt)


def scores(confusion: np.ndarray, class_names: list[str] | tuple[str, ...]) -> Scores:
    """Returns IoU per class, mIoU and pixel accuracy (all in %) of a class confusion matrix.

    ``confusion`` is (C, C) or (C + 1, C) with the unlabelled row last (rows predicted,
    columns ground truth). IoU = TP / (TP + FP + FN); PA = correct / all labelled pixels.
    Classes absent from both prediction and ground truth get IoU None and are left out
    of the mean.
    """
    n = len(class_names)
    if confusion.shape[1] != n or confusion.shape[0] not in (n, n + 1):
        raise ValueError(f"confusion shape {confusion.shape} does not fit {n} classes")
    conf = confusion.astype(np.float64)
    tp = np.diag(conf[:n, :n])
    gt_total = conf.sum(axis=0)
    pred_total = conf[:n].sum(axis=1)
    union = gt_total + pred_total - tp
    iou: dict[str, float | None] = {}
    for i, name in enumerate(class_names):
        iou[name] = None if union[i] == 0 else float(100.0 * tp[i] / union[i])
    valid = [v for v in iou.values() if v is not None]
    total = conf.sum()
    unlabelled = float(conf[n].sum() / total * 100.0) if confusion.shape[0] == n + 1 and total else 0.0
    return {
        "iou": iou,
        "miou": float(np.mean(valid)) if valid else 0.0,
        "pixel_accuracy": float(100.0 * tp.sum() / total) if total else 0.0,
        "unlabelled": unlabelled,
        "pixels": int(total),
    }


def weakest_class(result: dict[str, Any], class_names: list[str] | tuple[str, ...]) -> str:
    """Returns one sentence on the class with the lowest IoU in ``result`` (from :func:`evaluate_pairs`):
    where its ground-truth pixels went and what its false positives really are."""
    iou = result["scores"]["iou"]
    scored = [(value, name) for name, value in iou.items() if value is not None]
    if not scored:
        return "no class has pixels in this set"
    value, name = min(scored)
    k = list(class_names).index(name)
    conf = np.asarray(result["confusion"], dtype=np.float64)  # rows predicted (+ unlabelled), columns truth
    n = len(class_names)
    truth, predicted = conf[:, k], conf[k, :n]
    parts = [f"{name} is the weakest class (IoU {value:.1f} %)"]
    if truth.sum():
        missed = [(truth[i], class_names[i] if i < n else "unlabelled") for i in range(len(truth)) if i != k and truth[i]]
        if missed:
            count, where = max(missed)
            parts.append(f"{100 * count / truth.sum():.1f} % of its pixels are labelled {where}")
    if predicted.sum():
        wrong = [(predicted[i], class_names[i]) for i in range(n) if i != k and predicted[i]]
        if wrong:
            count, what = max(wrong)
            parts.append(f"{100 * count / predicted.sum():.1f} % of the pixels labelled {name} are {what}")
    return "; ".join(parts)


def hungarian_match(confusion: np.ndarray) -> dict[int, int]:
    """Returns a one-to-one map predicted id -> class id maximising matched pixels.

    ``confusion`` is (P, C) with one row per predicted id (no unlabelled row). Ids left
    without a partner (P > C) or matched to nothing are absent from the map.
    """
    rows, cols = linear_sum_assignment(-confusion.astype(np.float64))
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if confusion[r, c] > 0}


def majority_match(confusion: np.ndarray) -> dict[int, int]:
    """Returns a many-to-one map predicted id -> the class most of its pixels belong to."""
    return {int(r): int(np.argmax(confusion[r])) for r in range(confusion.shape[0]) if confusion[r].sum() > 0}


def remap_confusion(confusion: np.ndarray, mapping: dict[int, int], n_classes: int) -> np.ndarray:
    """Returns the (C + 1, C) class confusion from a (P + 1, C) id confusion and an id -> class map.

    The last input row (unlabelled) and ids missing from ``mapping`` go to the unlabelled row.
    """
    out = np.zeros((n_classes + 1, confusion.shape[1]), dtype=np.int64)
    for row in range(confusion.shape[0]):
        out[mapping.get(row, n_classes) if row < confusion.shape[0] - 1 else n_classes] += confusion[row]
    return out


def markdown_table(rows: dict[str, dict[str, Any]], class_names: list[str] | tuple[str, ...]) -> str:
    """Returns a markdown table in the paper's shape: IoU per class, mIoU, PA (plus unlabelled %).

    ``rows`` maps a row title (e.g. "hidden 12", "spectral") to a :func:`scores` result.
    """
    header = ["", *class_names, "mIoU", "PA", "unlabelled"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, result in rows.items():
        cells = [title]
        for name in class_names:
            value = result["iou"].get(name)
            cells.append("–" if value is None else f"{value:.2f}")
        cells += [f"{result['miou']:.2f}", f"{result['pixel_accuracy']:.2f}", f"{result.get('unlabelled', 0.0):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_pairs(
    pairs: list[tuple[str, np.ndarray, np.ndarray]],
    class_names: list[str] | tuple[str, ...],
    matching: str = "none",
    ignore_index: int = 255,
) -> dict[str, Any]:
    """Returns metrics over all (name, prediction, ground truth) pairs, summed over the set.

    ``matching``: ``none`` (ids are classes), ``hungarian`` (one-to-one) or ``majority``
    (many-to-one) when ids are clusters. The result holds ``scores`` (see :func:`scores`),
    ``confusion`` (class confusion, unlabelled row last), ``matching`` and ``mapping``.
    """
    if matching not in ("none", "hungarian", "majority"):
        raise ValueError(f"unknown matching {matching!r}; use none, hungarian or majority")
    n = len(class_names)
    n_pred = n if matching == "none" else ignore_index
    total = np.zeros((n_pred + 1, n), dtype=np.int64)
    for name, pred, gt in pairs:
        try:
            total += confusion_matrix(pred, gt, n_pred, n, ignore_index)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    mapping: dict[int, int] | None = None
    if matching != "none":
        ids = total[:-1]
        mapping = hungarian_match(ids) if matching == "hungarian" else majority_match(ids)
        total = remap_confusion(total, mapping, n)
    return {
        "matching": matching,
        "mapping": None if mapping is None else {str(k): class_names[v] for k, v in sorted(mapping.items())},
        "scores": scores(total, class_names),
        "confusion": total.tolist(),
        "images": len(pairs),
    }
