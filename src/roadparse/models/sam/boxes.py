"""Boxes of SAM's upsampled mask logits, computed without upsampling whole masks.

The official generator boxes every candidate on its logits upsampled to the image
(bilinear to the padded input size, crop, bilinear to the image size). Both resizes are
separable and linear, so the upsampled logits are ``R @ low @ C.T`` with small banded
matrices ``R`` (h, s) and ``C`` (w, s) whose rows are convex weights over at most three
neighbouring low-res rows (columns). Hence an output row can exceed the threshold only if
its support touches a low-res row that does; rows before the first such support are
provably empty. The first and last non-empty rows and columns are then found by
evaluating a few candidate rows (columns) exactly, each as a few-term weighted sum of
low-res rows (the matrices are banded): about 1/1000 of the work of upsampling the mask.
Candidates not settled within ``block`` rows are reported so the caller can upsample them
in full.
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


FIRST_ROWS = 4
"""Rows (columns) tried first at each edge: with 800-pixel crops of 256-pixel logits an edge is
within about 3 rows of where the search starts."""


def _banded(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns a banded (n_out, n_low) matrix as (n_out, W) int64 column indices and (n_out, W) weights.

    Row y's non-zero weights sit at ``index[y]`` (W: the widest band; narrower rows are
    padded with zero weights), so row y of ``matrix @ x`` is a W-term weighted sum of rows of x.
    """
    first, last = _support(matrix)
    width = int((last - first).max()) + 1
    unclamped = first[:, None] + torch.arange(width)
    index = unclamped.clamp(max=matrix.shape[1] - 1)
    weights = torch.where(unclamped <= last[:, None], matrix.gather(1, index), torch.zeros(()))
    return index, weights


def _banded_rows(x: torch.Tensor, band: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Returns (n, K, t): output rows ``rows`` (n, K) of the banded matrix ``band`` times each x (n, s, t)."""
    index, weights = band[0][rows], band[1][rows]  # (n, K, W)
    n, k, width = index.shape
    picked = x.gather(1, index.reshape(n, k * width, 1).expand(-1, -1, x.shape[2])).view(n, k, width, -1)
    return (picked * weights[..., None]).sum(2)


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
        self.row_band, self.col_band = _banded(self.rows), _banded(self.cols)
        self.block = block

    def _edge(self, candidates: torch.Tensor, evaluate, size: int, from_end: bool):
        """Returns each candidate's first output row (column) with a pixel above the threshold, searched
        from ``candidates`` over ``block`` rows, and whether one was found.

        Nearly always the edge is among the first few rows: those are tried first for every
        candidate, the rest of the block only for candidates not settled by them.
        """
        edge = torch.zeros_like(candidates)
        found = torch.zeros(len(candidates), dtype=torch.bool)
        pending = torch.arange(len(candidates))
        for start, stop in ((0, min(FIRST_ROWS, self.block)), (FIRST_ROWS, self.block)):
            if start >= stop or len(pending) == 0:
                continue
            steps = torch.arange(start, stop)
            base = candidates[pending, None]
            index = (base - steps if from_end else base + steps).clamp(0, size - 1)
            position, hit = _first_true(evaluate(None if start == 0 else pending, index))
            edge[pending] = index.gather(1, position[:, None])[:, 0]
            found[pending] = hit
            pending = pending[~hit]
        return edge, found

    def __call__(self, logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (N, 4) int64 inclusive boxes (zeros when empty) and (N,) bool "not settled".

        Args:
            logits: (N, s, s) float low-res mask logits.
        """
        n = logits.shape[0]
        logits = logits.float().cpu()
        # low-res rows/columns that only reach the cropped-away padding take no part
        inside = logits[:, : int(self.row_last.max()) + 1, : int(self.col_last.max()) + 1]
        row_any, col_any = inside.amax(2) > threshold, inside.amax(1) > threshold  # (N, s)
        nonempty = row_any.any(1)
        s = inside.shape[1]
        low_top = row_any.int().argmax(1)
        low_bottom = s - 1 - row_any.flip(1).int().argmax(1)
        low_left = col_any.int().argmax(1)
        low_right = inside.shape[2] - 1 - col_any.flip(1).int().argmax(1)
        height, width = self.rows.shape[0], self.cols.shape[0]

        # The K output rows of each candidate: a few-term weighted sum of low-res rows each (the
        # resize matrices are banded), then one product with the whole column matrix.
        def rows_on(which: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:  # (n, K) output rows -> any pixel above
            band = _banded_rows(logits if which is None else logits[which], self.row_band, index)  # (n, K, s)
            return (band @ self.cols.T > threshold).any(2)

        def cols_on(which: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:  # (n, K) output columns -> any pixel above
            band = _banded_rows((logits if which is None else logits[which]).transpose(1, 2), self.col_band, index)
            return (band @ self.rows.T > threshold).any(2)

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
