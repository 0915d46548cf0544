"""Boxes of SAM's upsampled mask logits, computed without upsampling whole masks.

The official generator boxes every candidate on its logits upsampled to the image
(bilinear to the padded input size, crop, bilinear to the image size). Both resizes are
separable and linear, so the upsampled logits are ``R @ low @ C.T`` with small banded
matrices ``R`` (h, s) and ``C`` (w, s) whose rows are convex weights over at most three
neighbouring low-res rows (columns). Hence an output row can exceed the threshold only if
its support touches a low-res row that does; rows before the first such support are
provably empty. The first and last non-empty rows and columns are then found by
evaluating a few candidate rows (columns) exactly: about 1/100 of the work of
upsampling the mask. Candidates not settled within ``block`` rows are reported so the
caller can upsample them in full.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_matrix(n_low: int, padded: int, crop: int, n_out: int) -> torch.Tensor:
    """Returns the (n_out, n_low) float32 matrix of one axis of the official mask post-processing.

    Linear (``align_corners=False``) from ``n_low`` to ``padded``, keep the first ``crop``,
    linear to ``n_out``: the per-axis weights of ``F.interpolate(..., mode="bilinear")``.
    """
    eye = torch.eye(n_low)[None]
    matrix = F.interpolate(eye, padded, mode="linear", align_corners=False)[..., :crop]
    return F.interpolate(matrix, n_out, mode="linear", align_corners=False)[0].T.contiguous()


def _support(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns each output row's first and last low-res index with a non-zero weight (non-decreasing)."""
    nonzero = matrix != 0
    index = torch.arange(matrix.shape[1])
    first = torch.where(nonzero, index, matrix.shape[1]).amin(1)
    last = torch.where(nonzero, index, -1).amax(1)
    return first, last


def _first_true(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns, per row of (N, K) bool, the first True position and whether there is one."""
    return flags.int().argmax(1), flags.any(1)


class UpscaledBoxes:
    """Inclusive boxes [x0, y0, x1, y1] of ``upsampled logits > threshold`` for one crop geometry.

    Args:
        low_side: side of the low-res logits (256).
        padded: side of the padded model input (1024).
        input_hw: (h, w) of the resized crop inside the padded input.
        size_hw: (h, w) of the crop.
        block: candidate rows (columns) evaluated exactly at each edge.
    """

    def __init__(self, low_side: int, padded: int, input_hw: tuple[int, int], size_hw: tuple[int, int], block: int = 24):
        self.rows = resize_matrix(low_side, padded, input_hw[0], size_hw[0])  # (h, s)
        self.cols = resize_matrix(low_side, padded, input_hw[1], size_hw[1])  # (w, s)
        self.row_first, self.row_last = _support(self.rows)
        self.col_first, self.col_last = _support(self.cols)
        self.block = block

    def _edge(self, candidates: torch.Tensor, evaluate, size: int, from_end: bool):
        steps = torch.arange(self.block)
        index = (candidates[:, None] - steps if from_end else candidates[:, None] + steps).clamp(0, size - 1)
        position, found = _first_true(evaluate(index))
        return index.gather(1, position[:, None])[:, 0], found

    def __call__(self, logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (N, 4) int64 inclusive boxes (zeros when empty) and (N,) bool "not settled".

        Args:
            logits: (N, s, s) float low-res mask logits.
        """
        n = logits.shape[0]
        logits = logits.float().cpu()
        # low-res rows/columns that only reach the cropped-away padding take no part
        above = logits[:, : int(self.row_last.max()) + 1, : int(self.col_last.max()) + 1] > threshold
        row_any, col_any = above.any(2), above.any(1)  # (N, s)
        nonempty = row_any.any(1)
        s = above.shape[1]
        low_top = row_any.int().argmax(1)
        low_bottom = s - 1 - row_any.flip(1).int().argmax(1)
        low_left = col_any.int().argmax(1)
        low_right = above.shape[2] - 1 - col_any.flip(1).int().argmax(1)
        height, width = self.rows.shape[0], self.cols.shape[0]

        def rows_on(index: torch.Tensor) -> torch.Tensor:  # (N, K) output rows -> any pixel above
            band = torch.bmm(self.rows[index], logits)  # (N, K, s)
            return (band @ self.cols.T > threshold).any(2)

        def cols_on(index: torch.Tensor) -> torch.Tensor:  # (N, K) output columns -> any pixel above
            band = torch.bmm(logits, self.cols[index].transpose(1, 2))  # (N, s, K)
            return (self.rows @ band > threshold).any(1)

        # first output row whose support reaches the first low-res row above the threshold, etc.
        top = torch.searchsorted(self.row_last, low_top)
        bottom = torch.searchsorted(self.row_first, low_bottom, right=True) - 1
        left = torch.searchsorted(self.col_last, low_left)
        right = torch.searchsorted(self.col_first, low_right, right=True) - 1
        y0, ok_top = self._edge(top, rows_on, height, from_end=False)
        y1, ok_bottom = self._edge(bottom, rows_on, height, from_end=True)
        x0, ok_left = self._edge(left, cols_on, width, from_end=False)
        x1, ok_right = self._edge(right, cols_on, width, from_end=True)
        boxes = torch.stack([x0, y0, x1, y1], 1).long()
        settled = ok_top & ok_bottom & ok_left & ok_right
        boxes = torch.where((nonempty & settled)[:, None], boxes, torch.zeros(n, 4, dtype=torch.long))
        return boxes, nonempty & ~settled
