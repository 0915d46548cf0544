"""Sliding windows over an image: window offsets, blending weights and a seam measure (pure NumPy)."""

from __future__ import annotations

import numpy as np


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Returns window offsets covering [0, length): every ``stride``, the last flush with the end.

    ``length`` must be at least ``window``.
    """
    if length < window:
        raise ValueError(f"length {length} is shorter than the window {window}")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def blend_weights(window: int) -> np.ndarray:
    """Returns the (window, window) float32 blending weight: outer product of 1-D Hann windows.

    Sampled at pixel centres, so it is strictly positive (a pixel seen by one window
    only still gets that window's prediction) and symmetric.
    """
    ramp = 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(window) + 0.5) / window)
    return np.outer(ramp, ramp).astype(np.float32)


def seam_rates(labels: np.ndarray, row_borders: list[int], col_borders: list[int]) -> dict[str, float]:
    """Returns how often neighbouring pixels change label across the given borders vs elsewhere.

    ``row_borders`` / ``col_borders`` are the first row / column of each window after the
    first one. A seam shows as a ``border`` rate well above the ``interior`` rate; the ratio
    is 1 when borders are invisible.

    Args:
        labels: (H, W) uint8 label map.
    """
    col_changes = labels[:, 1:] != labels[:, :-1]  # (H, W-1): change between column c-1 and c
    row_changes = labels[1:] != labels[:-1]  # (H-1, W)
    col_mask = np.zeros(col_changes.shape[1], dtype=bool)
    col_mask[[c - 1 for c in col_borders if 0 < c < labels.shape[1]]] = True
    row_mask = np.zeros(row_changes.shape[0], dtype=bool)
    row_mask[[r - 1 for r in row_borders if 0 < r < labels.shape[0]]] = True
    border = col_changes[:, col_mask].sum() + row_changes[row_mask].sum()
    n_border = col_changes[:, col_mask].size + row_changes[row_mask].size
    interior = col_changes[:, ~col_mask].sum() + row_changes[~row_mask].sum()
    n_interior = col_changes[:, ~col_mask].size + row_changes[~row_mask].size
    border_rate = float(border / max(n_border, 1))
    interior_rate = float(interior / max(n_interior, 1))
    return {"border": border_rate, "interior": interior_rate, "ratio": border_rate / max(interior_rate, 1e-12)}
