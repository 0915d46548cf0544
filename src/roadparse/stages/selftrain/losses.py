"""Segmentation losses for imbalanced classes: class-frequency weights and online hard-example mining.

The paper trains with plain cross-entropy. On pseudo-labels where cones cover 0.2 % of the
pixels and guardrails 5 %, plain cross-entropy lets the network trade those classes for a
slightly better road; ``selftrain.class_weights: inverse_sqrt_frequency`` weighs each pixel by
``1 / sqrt(f_c)`` (scaled so that the mean weight over the labelled pixels is 1), and
``selftrain.ohem_fraction`` averages the loss over the hardest share of the labelled pixels only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from roadparse.io.labels import IGNORE_INDEX


def class_weights(frequencies: np.ndarray, mode: str) -> np.ndarray | None:
    """Returns (C,) float32 loss weights for (C,) class ``frequencies`` (shares of labelled pixels); None for 'none'.

    'inverse_sqrt_frequency': ``w_c = f_c^-1/2 / sum_k f_k^1/2``, so that ``sum_c f_c w_c = 1``; classes absent
    from the labels get weight 1 (they contribute no pixels anyway).
    """
    if mode == "none":
        return None
    if mode != "inverse_sqrt_frequency":
        raise ValueError(f"unknown class weighting {mode!r}: use none or inverse_sqrt_frequency")
    present = frequencies > 0
    weights = np.ones_like(frequencies, dtype=np.float64)
    weights[present] = frequencies[present] ** -0.5 / np.sqrt(frequencies[present]).sum()
    return weights.astype(np.float32)


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    ohem_fraction: float | None = None,
) -> torch.Tensor:
    """Returns the mean (optionally class-weighted) cross-entropy over labelled pixels, or over their hardest share.

    Args:
        logits: (B, C, H, W) float.
        labels: (B, H, W) int64, IGNORE_INDEX = unlabelled.
        weights: (C,) float per-class weights, or None.
        ohem_fraction: keep only the ``ceil(fraction x labelled)`` pixels of highest loss; None: all.

    Returns 0 (with a gradient path) when no pixel is labelled.
    """
    if weights is None and ohem_fraction is None:  # plain: summed then divided, as the paper profile always did
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (labels != IGNORE_INDEX).sum().clamp_min(1)
    per_pixel = F.cross_entropy(logits.float(), labels, weight=weights, ignore_index=IGNORE_INDEX, reduction="none")
    labelled = per_pixel[labels != IGNORE_INDEX]
    if labelled.numel() == 0:
        return per_pixel.sum() * 0.0
    if ohem_fraction is not None and ohem_fraction < 1.0:
        keep = max(1, math.ceil(ohem_fraction * labelled.numel()))
        labelled = torch.topk(labelled, keep, sorted=False).values
    return labelled.mean()
