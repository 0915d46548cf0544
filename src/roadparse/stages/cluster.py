"""Stage 4: over-cluster the mask embeddings, write assignments, the gallery and a suggested merge map.

Reads ``embed/features_layer<L>.npy`` + ``embed/index.parquet``; writes
``cluster/assignments.parquet`` (mask_id, tile_id, cluster, distance), the gallery
``cluster/gallery/index.html`` and, when ground truth is given (``--labels`` or
``run.dev_labels``), ``cluster/merge_map.suggested.yaml`` by majority vote. Labels are
used to NAME clusters only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from roadparse.artifacts import (
    Tile,
    list_tiles,
    read_colour,
    read_features,
    read_index,
    read_tile_masks,
    tile_ground_truth,
)
from roadparse.clustering import append_colour, cluster
from roadparse.config import ClusterSettings, Settings
from roadparse.io.labels import ClassSet, load_classes, read_label_png
from roadparse.merge import (
    TileCoverage,
    merge_map_yaml,
    suggest_from_histograms,
    suggest_zero_shot,
    tile_coverage,
)
from roadparse.workspace import Workspace, atomic_output, atomic_write_text

log = logging.getLogger(__name__)

SUGGESTED = "merge_map.suggested.yaml"


def assignments_path(workspace: Workspace) -> Path:
    """Returns the path of ``cluster/assignments.parquet``."""
    return workspace.root / "cluster" / "assignments.parquet"


def read_assignments(workspace: Workspace) -> Any:
    """Returns the assignments as a pyarrow Table (mask_id, tile_id, cluster, distance).

    Raises:
        ValueError: the cluster stage has not finished.
    """
    import pyarrow.parquet as pq

    workspace.require_manifest("cluster")
    return pq.read_table(assignments_path(workspace))


def write_assignments(path: Path, index: Any, labels: np.ndarray, distances: np.ndarray) -> None:
    """Writes the assignments parquet atomically (rows in feature-row order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "mask_id": index.column("mask_id"),
            "tile_id": index.column("tile_id"),
            "cluster": pa.array(labels.astype(np.int32)),
            "distance": pa.array(distances.astype(np.float32)),
        }
    )
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def mask_key(tile_id: Any, mask_id: Any) -> tuple[str, str]:
    """Returns the key that identifies a mask across artifacts: (tile id, mask id), as strings."""
    return str(tile_id), str(mask_id)


def mask_rows(table: Any) -> dict[tuple[str, str], int]:
    """Returns mask key -> row of a table with ``tile_id`` and ``mask_id`` columns (index, assignments)."""
    pairs = zip(table.column("tile_id").to_pylist(), table.column("mask_id").to_pylist(), strict=True)
    return {mask_key(t, m): row for row, (t, m) in enumerate(pairs)}


def clustering_features(workspace: Workspace, section: ClusterSettings, layer: int) -> np.ndarray:
    """Returns the (N, D) features of ``layer`` that get clustered (colour statistics appended when asked)."""
    features = read_features(workspace, layer)
    if section.colour_weight == 0:
        return features
    return append_colour(features, read_colour(workspace), section.colour_weight)


def run(
    workspace: Workspace, settings: Settings, labels_dir: str | Path | None = None
) -> dict[str, Any]:
    """Clusters the embeddings of ``settings.cluster.layer``; returns the cluster manifest.

    Skips the clustering when it already finished with these settings and embeddings;
    the gallery and (with ground truth) the suggested merge map are (re)written after.
    """
    section = settings.cluster
    embed_manifest = workspace.require_manifest("embed")
    stage_run = workspace.begin("cluster", section, inputs={"embed": embed_manifest["fingerprint"]})
    if not stage_run.complete:
        features = clustering_features(workspace, section, section.layer)
        index = read_index(workspace)
        if index.num_rows != features.shape[0]:
            raise ValueError(
                f"{workspace.root / 'embed'}: index has {index.num_rows} rows but layer {section.layer} "
                f"has {features.shape[0]} feature rows; re-run `roadparse embed`"
            )
        log.info(
            "clustering %d masks (%d-d) with %s, k=%d",
            *features.shape,
            section.method,
            section.n_clusters,
        )
        result = cluster(
            features,
            section.method,
            section.n_clusters,
            seed=section.seed,
            normalize=section.normalize,
            pca_dim=section.pca_dim,
            n_neighbors=section.n_neighbors,
            sample_size=section.sample_size,
        )
        write_assignments(assignments_path(workspace), index, result.labels, result.distances)
        stage_run.finish(
            {
                "masks": int(len(result.labels)),
                "n_clusters": section.n_clusters,
                "clustering": result.info,
            }
        )
    tiles = None
    if labels_dir is None and settings.run.dev_labels is not None:
        from roadparse.pipeline import dev_tiles

        labels_dir, tiles = settings.run.dev_labels, dev_tiles(workspace, settings)
    suggestions = None
    if labels_dir is not None:
        _, suggestions = suggest_by_majority(workspace, settings, labels_dir, tiles=tiles)
    write_gallery_safely(workspace, settings, suggestions)
    return stage_run.manifest  # type: ignore[return-value]


def write_gallery_safely(
    workspace: Workspace, settings: Settings, suggestions: list[dict[str, Any]] | None
) -> None:
    """Writes the gallery; a tile that cannot be read costs its thumbnails, not the stage."""
    from roadparse.report.gallery import write_gallery

    path = write_gallery(workspace, settings, suggestions)
    log.info("cluster gallery: %s", path)


def ground_truth_lookup(labels_dir: str | Path) -> Callable[[Tile], np.ndarray | None]:
    """Returns tile -> (h, w) uint8 ground truth, or None when the tile has none.

    Looks for a tile-level label ``labels_dir/<tile_id>.png`` first, else crops the
    frame label ``labels_dir/<frame stem>.png`` at the tile offset.
    """
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise ValueError(f"{labels_dir}: ground-truth label folder not found")

    def lookup(tile: Tile) -> np.ndarray | None:
        tile_label = labels_dir / f"{tile.id}.png"
        if tile_label.exists():
            return read_label_png(tile_label)
        if (labels_dir / f"{Path(tile.frame).stem}.png").exists():
            return tile_ground_truth(tile, labels_dir)
        return None

    return lookup


def collect_coverage(
    workspace: Workspace,
    tiles: Iterable[Tile],
    labels_dir: str | Path,
    classes: ClassSet,
    keys: dict[tuple[str, str], int],
) -> tuple[list[tuple[TileCoverage, np.ndarray]], np.ndarray]:
    """Returns the coverage of every labelled tile and the (M, C) ground-truth histogram per mask.

    ``keys`` maps (tile id, mask id) -> row of the mask in the assignments. Each coverage
    comes with the (n tile masks,) int64 rows of the tile's masks (-1: not embedded).
    """
    lookup = ground_truth_lookup(labels_dir)
    histograms = np.zeros((len(keys), len(classes)), dtype=np.int64)
    coverages = []
    for tile in tqdm(list(tiles), desc="ground truth", unit="tiles", dynamic_ncols=True):
        ground_truth = lookup(tile)
        if ground_truth is None:
            continue
        masks = read_tile_masks(workspace, tile.id)
        rows = np.array([keys.get(mask_key(tile.id, m["id"]), -1) for m in masks], dtype=np.int64)
        try:
            coverage = tile_coverage(masks, ground_truth, len(classes))
        except ValueError as exc:
            raise ValueError(f"tile {tile.id}: {exc}") from None
        coverages.append((coverage, rows))
        local = np.zeros((len(masks), len(classes)), dtype=np.int64)
        for stack, histogram in zip(coverage.stacks, coverage.histograms, strict=True):
            local[stack] += histogram
        embedded = rows >= 0
        histograms[rows[embedded]] += local[embedded]
    if not coverages:
        raise ValueError(
            f"{labels_dir}: no ground truth for any tile (expected <frame stem>.png or <tile id>.png)"
        )
    return coverages, histograms


def suggest_by_majority(
    workspace: Workspace,
    settings: Settings,
    labels_dir: str | Path,
    *,
    tiles: list[Tile] | None = None,
    min_purity: float | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Writes ``cluster/merge_map.suggested.yaml`` by majority vote; returns (path, suggestions)."""
    classes = load_classes(settings.classes)
    assignments = read_assignments(workspace)
    keys = mask_rows(assignments)
    clusters = assignments.column("cluster").to_numpy().astype(np.int64)
    _, histograms = collect_coverage(
        workspace, tiles if tiles is not None else list_tiles(workspace), labels_dir, classes, keys
    )
    purity = settings.cluster.min_purity if min_purity is None else min_purity
    n_clusters = int(workspace.require_manifest("cluster")["summary"]["n_clusters"])
    suggestions = suggest_from_histograms(clusters, histograms, n_clusters, classes.names, purity)
    source = f"majority vote of the ground truth in {labels_dir}, min purity {purity}"
    path = workspace.root / "cluster" / SUGGESTED
    atomic_write_text(path, merge_map_yaml(suggestions, classes.names, source))
    log.info("suggested merge map: %s", path)
    return path, suggestions


def suggest_by_zero_shot(
    workspace: Workspace,
    settings: Settings,
    model: str,
    *,
    device: str = "auto",
    min_score: float = 0.0,
) -> tuple[Path, list[dict[str, Any]]]:
    """Writes the suggested merge map from zero-shot scores of each cluster's typical crops.

    Raises:
        ModelLoadError: the CLIP/SigLIP model cannot be loaded (offline, missing path).
    """
    from roadparse.models.zero_shot import load_zero_shot_classifier
    from roadparse.report.gallery import cluster_crops

    classes = load_classes(settings.classes)
    classifier = load_zero_shot_classifier(model, device)
    crops = cluster_crops(workspace, settings.cluster.gallery_size, outline=False)
    suggestions = suggest_zero_shot(crops, classes.names, classifier, min_score)
    path = workspace.root / "cluster" / SUGGESTED
    atomic_write_text(
        path, merge_map_yaml(suggestions, classes.names, f"zero-shot {model} on typical crops")
    )
    write_gallery_safely(workspace, settings, suggestions)
    return path, suggestions
