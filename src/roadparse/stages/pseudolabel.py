"""Stage 4b: paint each tile's masks with the class of their cluster (via the merge map).

Writes ``pseudolabel/labels/<tile_id>.png`` (palette PNG, 255 = unlabelled). Masks are
painted larger first so small masks on top stay visible; masks of discarded clusters
and masks without an embedding are not painted; masks of a split cluster take the
class of their part. Resumable per tile.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import (
    Tile,
    clustering_features,
    gallery_path,
    list_tiles,
    mask_key,
    masks_path,
    pseudo_label_dir,
    read_assignments,
    read_merge_map,
    stage_summary,
    suggested_merge_map_path,
)
from roadparse.artifacts import merge_map_path as default_merge_map_path
from roadparse.config import Settings
from roadparse.executor import process_items
from roadparse.io.labels import IGNORE_INDEX, ClassSet, load_classes, write_label_png
from roadparse.merge import class_table, paint_masks, split_class_ids
from roadparse.merge_split import Split, check_sizes, split_points
from roadparse.workspace import StageManifest, Workspace

log = logging.getLogger(__name__)


def labels_dir(workspace: Workspace) -> Path:
    """Returns the folder of the pseudo-label PNGs."""
    return pseudo_label_dir(workspace)


def merge_map_digest(merge_map: Mapping[int, str | Split]) -> str:
    """Returns a short hash of what a merge map paints (cluster -> class, or split parts and sizes).

    Comments, key order and a split's ``unsplit`` (a suggestion for the review page, never
    painted) do not count: editing them does not repaint, nor retrain what depends on it.
    """
    canonical: dict[str, Any] = {}
    for cluster_id, value in sorted(merge_map.items()):
        if isinstance(value, Split):
            entry = value.to_yaml_value()
            entry.pop("unsplit", None)
            canonical[str(cluster_id)] = entry
        else:
            canonical[str(cluster_id)] = value
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def merge_map_file(
    workspace: Workspace, settings: Settings, merge_map_path: str | Path | None = None
) -> Path:
    """Returns the merge map to use, or raises saying where the gallery and the suggestion are.

    Raises:
        ValueError: the merge map does not exist.
    """
    path = Path(merge_map_path) if merge_map_path is not None else default_merge_map_path(workspace, settings)
    if path.exists():
        return path
    gallery = gallery_path(workspace)
    suggested = suggested_merge_map_path(workspace)
    how = (
        f"start from the suggestion: cp {suggested} {path}"
        if suggested.exists()
        else f"write it by hand (clusters: {{0: road, 1: discard, ...}}), or get a suggestion with "
        f"`roadparse cluster suggest {workspace.root} --labels GT_DIR` (or --zero-shot MODEL)"
    )
    raise ValueError(
        f"{path}: merge map not found. Name the clusters in your browser and save the map: "
        f"`roadparse review {workspace.root}`; or look at the clusters in {gallery} and {how}, edit it; "
        f"then run `roadparse pseudolabel {workspace.root}` again"
    )


def mask_class_ids(
    workspace: Workspace,
    settings: Settings,
    merge_map: Mapping[int, str | Split],
    table: np.ndarray,
    where: str | Path = "merge map",
) -> np.ndarray:
    """Returns the (N,) uint8 class id of every clustered mask (assignment row order).

    Masks of a split cluster get the class of their part: the split is recomputed on
    the clustering features and must reproduce the sizes recorded in the map.

    Raises:
        ValueError: a split no longer reproduces (the message says to split it again).
    """
    clusters = read_assignments(workspace).column("cluster").to_numpy().astype(np.int64)
    row_classes = table[clusters]
    splits = {c: v for c, v in merge_map.items() if isinstance(v, Split)}
    if splits:
        features = clustering_features(workspace, settings.cluster.layer, settings.cluster)
        for cluster_id, split in sorted(splits.items()):
            rows = np.flatnonzero(clusters == cluster_id)
            parts = split_points(np.asarray(features[rows]), split.k, split.seed)
            check_sizes(split, parts, f"{where}: cluster {cluster_id}")
            row_classes[rows] = split_class_ids(split, parts, load_classes(settings.classes))
    return row_classes


def _paint_tile(
    tile: Tile,
    workspace: Workspace,
    classes: ClassSet,
    mask_class: dict[tuple[str, str], int],
) -> dict[str, Any]:
    path = masks_path(workspace, tile.id)
    if not path.exists():
        raise ValueError(f"{path}: no masks for tile {tile.id}; run `roadparse masks`")
    record = json.loads(path.read_text())
    masks = record["masks"]
    height, width = int(record.get("height", tile.size[1])), int(record.get("width", tile.size[0]))
    mask_classes = []
    missing = 0
    for mask in masks:
        class_id = mask_class.get(mask_key(tile.id, mask["id"]))
        if class_id is None:
            missing += 1
        mask_classes.append(IGNORE_INDEX if class_id is None else class_id)
    label = paint_masks(height, width, masks, mask_classes)
    write_label_png(labels_dir(workspace) / f"{tile.id}.png", label, classes)
    pixels = np.bincount(label.ravel(), minlength=256)
    mask_counts = np.bincount(
        [c for c in mask_classes if c != IGNORE_INDEX], minlength=len(classes)
    )
    return {
        "pixels": {name: int(pixels[i]) for i, name in enumerate(classes.names)},
        "masks": {name: int(mask_counts[i]) for i, name in enumerate(classes.names)},
        "unlabelled": int(pixels[IGNORE_INDEX]),
        "total": int(label.size),
        "unembedded_masks": missing,
    }


def _summary(items: dict[str, dict[str, Any]], classes: ClassSet) -> dict[str, Any]:
    pixels = {name: sum(r["pixels"][name] for r in items.values()) for name in classes.names}
    masks = {name: sum(r["masks"][name] for r in items.values()) for name in classes.names}
    total = sum(r["total"] for r in items.values())
    unlabelled = sum(r["unlabelled"] for r in items.values())
    return {
        "pixels": pixels,
        "masks": masks,
        "unlabelled_pixels": unlabelled,
        "unlabelled_share": round(unlabelled / total, 6) if total else 0.0,
        "unembedded_masks": sum(r["unembedded_masks"] for r in items.values()),
    }


def run(
    workspace: Workspace, settings: Settings, merge_map_path: str | Path | None = None
) -> StageManifest:
    """Paints the pseudo-labels of every tile; returns the pseudolabel manifest.

    Raises:
        ValueError: the cluster stage has not run, or the merge map is missing or invalid.
    """
    cluster_manifest = workspace.require_manifest("cluster")
    path = merge_map_file(workspace, settings, merge_map_path)
    n_clusters = stage_summary(cluster_manifest, "cluster")["n_clusters"]
    classes = load_classes(settings.classes)
    try:
        merge_map = read_merge_map(path, n_clusters)
        table = class_table(merge_map, n_clusters, classes)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    inputs = {
        "cluster": cluster_manifest["fingerprint"],
        "merge_map": merge_map_digest(merge_map),
        "classes": list(classes.names),
    }
    stage_run = workspace.begin("pseudolabel", settings.pseudolabel, inputs=inputs)
    if stage_run.manifest is not None:  # finished with these settings and inputs
        return stage_run.manifest
    assignments = read_assignments(workspace)
    row_classes = mask_class_ids(workspace, settings, merge_map, table, path)
    mask_classes = {
        mask_key(t, m): int(c)
        for t, m, c in zip(
            assignments.column("tile_id").to_pylist(),
            assignments.column("mask_id").to_pylist(),
            row_classes.tolist(),
            strict=True,
        )
    }
    tiles = {tile.id: tile for tile in list_tiles(workspace)}
    process_items(
        stage_run,
        tiles,
        lambda tile: _paint_tile(tile, workspace, classes, mask_classes),
        desc="pseudolabel",
        unit="tiles",
    )
    summary = _summary(stage_run.items(), classes)
    summary["merge_map"] = str(path)
    log.info("pseudo-labels: %s unlabelled", f"{summary['unlabelled_share']:.1%}")
    return stage_run.finish(summary)
