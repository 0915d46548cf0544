"""Boxes of upsampled SAM logits without upsampling (``roadparse.models.sam.boxes``) equal the full computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from roadparse.models.sam import boxes as sam_boxes
from roadparse.models.sam.amg import logits_to_boxes
from roadparse.models.sam.boxes import UpscaledBoxes, resize_matrix


def _full_boxes(logits: torch.Tensor, padded: int, input_hw: tuple[int, int], size_hw: tuple[int, int]) -> torch.Tensor:
    """The official post-processing: bilinear to the padded input, crop, bilinear to the crop; then boxes."""
    up = F.interpolate(logits[:, None], (padded, padded), mode="bilinear", align_corners=False)
    up = up[..., : input_hw[0], : input_hw[1]]
    up = F.interpolate(up, size_hw, mode="bilinear", align_corners=False)[:, 0]
    return logits_to_boxes(up, 0.0)


def _logits(n: int, side: int, seed: int) -> torch.Tensor:
    """Smooth blobs (edges found in the first rows tried), isolated spikes (edges further in: a lone
    low-res pixel above 0 may vanish after interpolation), and empty masks."""
    generator = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.randn(n, 1, 8, 8, generator=generator), (side, side), mode="bilinear")[:, 0] * 3 - 1
    spikes = torch.full((n, side, side), -2.0)
    ys, xs = torch.randint(0, side, (2, n, 3), generator=generator)
    spikes[torch.arange(n)[:, None], ys, xs] = torch.rand(n, 3, generator=generator) * 3
    return torch.cat([smooth, spikes, torch.full((2, side, side), -1.0)])


@pytest.mark.parametrize(
    ("padded", "input_hw", "size_hw"),
    [(1024, (1024, 1024), (800, 800)), (1024, (768, 1024), (600, 800)), (256, (192, 256), (150, 200))],
)
def test_banded_boxes_equal_full_upsampling(padded, input_hw, size_hw):
    logits = _logits(40, 64 if padded == 256 else 256, seed=padded + input_hw[0])
    reference = _full_boxes(logits, padded, input_hw, size_hw)
    boxes, unsettled = UpscaledBoxes(logits.shape[-1], padded, input_hw, size_hw)(logits, 0.0)
    settled = ~unsettled
    assert settled[:40].all()  # smooth masks always settle; spikes may be left to full upsampling
    assert torch.equal(boxes[settled], reference[settled])


def test_second_stage_settles_edges_beyond_the_first_rows(monkeypatch):
    """With one row tried first, most edges need the rest of the block: the result must not change."""
    logits = _logits(30, 256, seed=1)
    boxer = UpscaledBoxes(256, 1024, (1024, 1024), (800, 800))
    expected, expected_unsettled = boxer(logits, 0.0)
    monkeypatch.setattr(sam_boxes, "FIRST_ROWS", 1)
    boxes, unsettled = boxer(logits, 0.0)
    assert torch.equal(unsettled, expected_unsettled)
    assert torch.equal(boxes, expected)
    assert torch.equal(boxes[~unsettled], _full_boxes(logits, 1024, (1024, 1024), (800, 800))[~unsettled])


@pytest.mark.parametrize("args", [(256, 1024, 768, 600), (64, 256, 192, 150), (256, 1024, 1024, 800)])
def test_banded_form_equals_the_resize_matrix(args):
    """Including the last rows, whose band is cut by the matrix edge (padded with zero weights)."""
    matrix = resize_matrix(*args)
    index, weights = sam_boxes._banded(matrix)
    rebuilt = torch.zeros_like(matrix).scatter_add_(1, index, weights)
    assert index.shape[1] <= 4
    assert torch.equal(rebuilt, matrix)
