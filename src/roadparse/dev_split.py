"""The dev split: the tiles whose frames have ground truth, and scores of label folders on them.

The pipeline (every round's table), the self-training stop rule and the demo report all
score through :func:`score_label_dir`, so they cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import (
    Tile,
    collect_coverage,
    list_tiles,
    mask_key,
    mask_rows,
    read_assignments,
    read_tile_masks,
    tile_ground_truth,
)
from roadparse.config import RunSettings
from roadparse.io import rle
from roadparse.io.labels import IGNORE_INDEX, ClassSet, read_label_png
from roadparse.merge import paint_masks, painting_order
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

    ``run.naming_frames`` when set (tiles of those frames with a label in ``run.dev_labels``);
    ``run.naming_share`` when set (that share of the labelled tiles outside the dev tiles, at least
    one, drawn with seed 0 from them sorted by id: the same tiles whatever order they were listed
    in); else the dev tiles (:func:`dev_tiles`).
    """
    if run.dev_labels is None:
        return []
    if run.naming_share is not None:
        dev = {tile.id for tile in dev_tiles(workspace, run)}
        pool = sorted((tile for tile in _labelled_tiles(workspace, run.dev_labels, None) if tile.id not in dev),
                      key=lambda tile: tile.id)
        if not pool:
            return []
        count = max(1, round(run.naming_share * len(pool)))
        chosen = np.random.default_rng(0).choice(len(pool), size=count, replace=False)
        return [pool[index] for index in sorted(chosen)]
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


def cluster_ceiling(
    workspace: Workspace, tiles: list[Tile], naming: list[Tile], gt_labels_dir: str | Path, classes: ClassSet,
) -> dict[str, Any]:
    """Returns metrics on ``tiles`` of the best merge map for the run's clusters, and that map.

    Each cluster is named by the majority ground-truth class under its masks in ``naming``
    (pass every labelled tile for the best a vote could do); a cluster with no labelled pixel
    there stays unnamed, its masks unlabelled. Between :func:`mask_ceiling` and this lies what
    the clustering loses (clusters that mix classes); between this and the pseudo-labels, what
    the naming loses (too few or unlucky naming frames).

    Raises:
        ValueError: no tile of ``naming`` has ground truth.
    """
    table = read_assignments(workspace)
    keys = mask_rows(table)
    clusters = table.column("cluster").to_numpy().astype(np.int64)
    _, histograms = collect_coverage(workspace, naming, gt_labels_dir, classes, keys)
    votes = np.zeros((int(clusters.max()) + 1 if len(clusters) else 0, len(classes)), np.int64)
    np.add.at(votes, clusters, histograms)
    names = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), IGNORE_INDEX)
    mask_class = {key: int(names[clusters[row]]) for key, row in keys.items()}
    pairs = []
    for tile in tiles:
        truth = tile_ground_truth(tile, gt_labels_dir)
        masks = read_tile_masks(workspace, tile.id)
        ids = [mask_class.get(mask_key(tile.id, mask["id"]), IGNORE_INDEX) for mask in masks]
        pairs.append((tile.id, paint_masks(truth.shape[0], truth.shape[1], masks, ids), truth))
    result = evaluate_pairs(pairs, classes.names)
    result["merge_map"] = {int(c): (classes.names[n] if n != IGNORE_INDEX else None) for c, n in enumerate(names)}
    return result
