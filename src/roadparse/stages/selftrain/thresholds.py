"""Per-class confidence thresholds for relabelling, so that the next round never loses a class.

One global ``selftrain.relabel_confidence`` (e.g. 0.9) keeps the classes the model is sure of and
drops the others whole: a teacher that predicts cones with probability 0.6-0.8 hands the
student no cone pixel at all. With ``selftrain.relabel_class_quantile`` = q, class ``c`` keeps
the pixels predicted as ``c`` whose confidence reaches

    t_c = min(relabel_confidence, the q-quantile of the confidence of the pixels predicted as c)

so every predicted class keeps at least a (1 - q) share of its pixels, and classes the model
is sure of are cut as before. Confidences are stored quantised to 1/255 (uint8).
"""

from __future__ import annotations

import numpy as np

from roadparse.io.labels import IGNORE_INDEX

LEVELS = 256
"""Confidence levels of the uint8 quantisation: level v stands for probability v / 255."""


def quantise_confidence(probability: np.ndarray) -> np.ndarray:
    """Returns (H, W) uint8 levels (round(p x 255)) of (H, W) float probabilities in [0, 1]."""
    return np.clip(np.rint(probability * (LEVELS - 1)), 0, LEVELS - 1).astype(np.uint8)


def confidence_histograms(labels: np.ndarray, confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Returns (n_classes, 256) int64 counts of confidence levels per predicted class.

    Args:
        labels: (H, W) uint8 predicted class ids, IGNORE_INDEX = padding (left out).
        confidence: (H, W) uint8 confidence levels of the predicted class.
        n_classes: number of classes.
    """
    valid = (labels != IGNORE_INDEX) & (labels < n_classes)
    flat = labels[valid].astype(np.int64) * LEVELS + confidence[valid]
    return np.bincount(flat, minlength=n_classes * LEVELS).reshape(n_classes, LEVELS)


def class_thresholds(histograms: np.ndarray, global_threshold: float, quantile: float | None) -> np.ndarray:
    """Returns (C,) float64 thresholds: ``global_threshold``, lowered per class to its ``quantile`` confidence.

    The quantile is the lowest level whose cumulative share reaches ``quantile``, so pixels at or above it
    are at least a (1 - quantile) share of the class. Classes never predicted keep ``global_threshold``.
    """
    thresholds = np.full(len(histograms), float(global_threshold))
    if quantile is None:
        return thresholds
    for c, histogram in enumerate(histograms):
        total = histogram.sum()
        if total == 0:
            continue
        level = int(np.searchsorted(np.cumsum(histogram), quantile * total, side="left"))
        thresholds[c] = min(global_threshold, level / (LEVELS - 1))
    return thresholds


def confident_labels(labels: np.ndarray, confidence: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Returns (H, W) uint8 ``labels`` with pixels whose confidence level is under their class's threshold unlabelled."""
    out = labels.copy()
    valid = labels != IGNORE_INDEX
    # compare on the stored levels: a quantile threshold is a level itself; 0.9 needs level 230 (p >= 229.5 / 255)
    needed = np.rint(thresholds * (LEVELS - 1)).astype(np.int64)
    below = valid.copy()
    below[valid] = confidence[valid].astype(np.int64) < needed[labels[valid].astype(np.int64)]
    out[below] = IGNORE_INDEX
    return out


def kept_shares(histograms: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Returns (C,) float64: the share of each class's predicted pixels at or above its threshold (nan: none)."""
    needed = np.rint(thresholds * (LEVELS - 1)).astype(np.int64)
    totals = histograms.sum(axis=1)
    kept = np.array([histogram[level:].sum() for histogram, level in zip(histograms, needed, strict=True)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, kept / np.maximum(totals, 1), np.nan)
