"""The dev split: the tiles whose frames have ground truth, and scores of label folders on them.

The pipeline (every round's table), the self-training stop rule and the demo report all
score through :func:`score_label_dir`, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import Tile, list_tiles, read_tile_masks, tile_ground_truth
from roadparse.config import RunSettings
from roadparse.io import rle
from roadparse.io.labels import read_label_png
from roadparse.merge import painting_order
from roadparse.metrics import evaluate_pairs
from roadparse.workspace import Workspace


def _labelled_tiles(workspace: Workspace, labels_dir: str, frames: set[str] | None) -> list[Tile]:
    """Returns the tiles whose frame has a label PNG in ``labels_dir`` (and, when ``frames`` is given, is one of them)."""
    tiles = []
    for tile in list_tiles(workspace):
        stem = Path(tile.frame).stem
        if (frames is None or stem in frames) and (Path(labels_dir) / f"{stem}.png").exists():
            tiles.append(tile)
    return tiles


def dev_tiles(workspace: Workspace, run: RunSettings) -> list[Tile]:
    """Returns the tiles whose frame has ground truth in ``run.dev_labels`` (and is a dev frame)."""
    if run.dev_labels is None:
        return []
    return _labelled_tiles(workspace, run.dev_labels, set(run.dev_frames) if run.dev_frames is not None else None)


def naming_tiles(workspace: Workspace, run: RunSettings) -> list[Tile]:
    """Returns the tiles whose labels name the clusters in the majority-vote suggestion.

    ``run.naming_frames`` when set (tiles of those frames with a label in ``run.dev_labels``),
    else the dev tiles (:func:`dev_tiles`).
    """
    if run.dev_labels is None:
        return []
    if run.naming_frames is None:
        return dev_tiles(workspace, run)
    return _labelled_tiles(workspace, run.dev_labels, set(run.naming_frames))


def held_out_tiles(workspace: Workspace, run: RunSettings) -> list[Tile]:
    """Returns the labelled tiles that neither name the clusters nor are dev tiles (scores no choice was made on)."""
    if run.dev_labels is None:
        return []
    used = {tile.id for tile in (*dev_tiles(workspace, run), *naming_tiles(workspace, run))}
    return [tile for tile in _labelled_tiles(workspace, run.dev_labels, None) if tile.id not in used]


def score_label_dir(
    labels_dir: Path, tiles: list[Tile], gt_labels_dir: str | Path, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Returns metrics of ``labels_dir/<tile_id>.png`` against the frame ground truth under each tile.

    Pixel counts are summed over the tiles; unlabelled (255) predictions count as errors.
    The result is :func:`roadparse.metrics.evaluate_pairs`'s (``scores``, ``confusion``, ...).

    Raises:
        ValueError: a tile has no label in ``labels_dir``.
    """
    pairs = []
    for tile in tiles:
        path = labels_dir / f"{tile.id}.png"
        if not path.exists():
            raise ValueError(f"{path}: no label for dev tile {tile.id}")
        pairs.append((tile.id, read_label_png(path), tile_ground_truth(tile, gt_labels_dir)))
    return evaluate_pairs(pairs, class_names)


def mask_ceiling(workspace: Workspace, tiles: list[Tile], gt_labels_dir: str | Path, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Returns metrics of the best any merge map could do with the run's masks on ``tiles``.

    Every mask is painted with the majority ground-truth class under it in the order
    pseudo-labelling paints them (:func:`roadparse.merge.painting_order`); pixels no mask covers stay
    unlabelled. The gap between this and the pseudo-labels is the clustering's; the gap
    between this and 100 % is the masks'.
    """
    pairs = []
    for tile in tiles:
        truth = tile_ground_truth(tile, gt_labels_dir)
        best = np.full(truth.shape, 255, dtype=np.uint8)
        masks = read_tile_masks(workspace, tile.id)
        for index in painting_order([mask["area"] for mask in masks]):
            pixels = rle.decode(masks[index]["rle"]).astype(bool)
            counts = np.bincount(truth[pixels], minlength=256)[: len(class_names)]
            if counts.sum():
                best[pixels] = int(counts.argmax())
        pairs.append((tile.id, best, truth))
    return evaluate_pairs(pairs, class_names)
