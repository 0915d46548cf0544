"""Stage 4: over-cluster the mask embeddings, write assignments, the gallery and a suggested merge map.

Reads ``embed/features_layer<L>.npy`` + ``embed/index.parquet``; writes
``cluster/assignments.parquet`` (mask_id, tile_id, cluster, distance), the gallery
``cluster/gallery/index.html`` and, when ground truth is given (``--labels`` or
``run.dev_labels``), ``cluster/merge_map.suggested.yaml`` by majority vote. Labels are
used to NAME clusters only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import (
    TEXTURE_VERSION,
    Tile,
    assignments_path,
    cluster_count,
    clustering_features,
    collect_coverage,
    list_tiles,
    mask_rows,
    read_assignments,
    read_index,
    read_statistics_record,
    statistics_record_path,
    suggested_merge_map_path,
)
from roadparse.clustering import cluster
from roadparse.config import Settings
from roadparse.io.labels import load_classes
from roadparse.merge import (
    merge_map_yaml,
    name_unseen_clusters,
    suggest_from_histograms,
    suggest_zero_shot,
    unnamed_classes,
)
from roadparse.workspace import StageManifest, Workspace, atomic_output, atomic_write_text

log = logging.getLogger(__name__)

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


def surround_width(workspace: Workspace, asked_cm: float) -> float:
    """Returns the ring width (cm) of the embedding's ``surround.npy``.

    Raises:
        ValueError: there are none, or they were made for another ``embed.surround_cm`` (run `roadparse embed`).
    """
    made = read_statistics_record(workspace).get("surround_cm")
    if made != asked_cm:
        have = "none" if made is None else f"those of a {made:g} cm ring"
        raise ValueError(
            f"{statistics_record_path(workspace).parent}: cluster.contrast_weight needs the surrounds of a {asked_cm:g} cm "
            f"ring (embed.surround_cm), the embedding has {have}; run `roadparse embed` (it recomputes them without re-encoding)"
        )
    return float(made)


def texture_version(workspace: Workspace) -> int:
    """Returns the version of the embedding's ``texture.npy``.

    Raises:
        ValueError: there is none, or it is of another version (run `roadparse embed`).
    """
    made = read_statistics_record(workspace).get("texture")
    if made != TEXTURE_VERSION:
        raise ValueError(
            f"{statistics_record_path(workspace).parent}: cluster.texture_weight needs the masks' textures (version "
            f"{TEXTURE_VERSION}), the embedding has {'none' if made is None else f'version {made}'}; run `roadparse embed` "
            "(it computes them without re-encoding)"
        )
    return TEXTURE_VERSION


def run(
    workspace: Workspace, settings: Settings, labels_dir: str | Path | None = None
) -> StageManifest:
    """Clusters the embeddings of ``settings.cluster.layer``; returns the cluster manifest.

    Skips the clustering when it already finished with these settings and embeddings;
    the gallery and (with ground truth) the suggested merge map are (re)written after.
    """
    section = settings.cluster
    embed_manifest = workspace.require_manifest("embed")
    inputs: dict[str, object] = {"embed": embed_manifest["fingerprint"]}
    if section.contrast_weight:  # the surrounds are kept outside the embed fingerprint (recomputed on their own)
        inputs["surround_cm"] = surround_width(workspace, settings.embed.surround_cm)
    if section.texture_weight:
        inputs["texture"] = texture_version(workspace)
    stage_run = workspace.begin("cluster", section, inputs=inputs)
    manifest = stage_run.manifest  # None unless finished with these settings and embeddings
    if manifest is None:
        features = clustering_features(workspace, section.layer, section)
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
            n_neighbors=section.n_neighbors,
            sample_size=section.sample_size,
        )
        stage_run.start()  # the clustering succeeded: now the folder is this run's
        write_assignments(assignments_path(workspace), index, result.labels, result.distances)
        manifest = stage_run.finish(
            {
                "masks": int(len(result.labels)),
                "n_clusters": section.n_clusters,
                "clustering": result.info,
            }
        )
    tiles = None
    if labels_dir is None and settings.run.dev_labels is not None:
        from roadparse.dev_split import naming_tiles

        labels_dir, tiles = settings.run.dev_labels, naming_tiles(workspace, settings.run)
        if not tiles and settings.run.naming_frames is not None:
            raise ValueError(
                f"run.naming_frames {settings.run.naming_frames}: no tile of these frames has a label in "
                f"{settings.run.dev_labels}; name frames that have one, or leave naming_frames null"
            )
        if not tiles and settings.run.naming_share is not None:
            raise ValueError(
                f"run.naming_share {settings.run.naming_share}: no labelled tile outside the dev frames in "
                f"{settings.run.dev_labels}; label frames outside run.dev_frames, or leave naming_share null"
            )
    suggestions: list[dict[str, Any]] | None = None
    warnings: list[str] = []
    if labels_dir is not None:
        _, suggestions, warnings = suggest_by_majority(workspace, settings, labels_dir, tiles=tiles)
    write_gallery_safely(workspace, settings, suggestions, warnings)
    return manifest


def write_gallery_safely(
    workspace: Workspace, settings: Settings, suggestions: list[dict[str, Any]] | None, warnings: Sequence[str] = ()
) -> None:
    """Writes the gallery; a tile that cannot be read costs its thumbnails, not the stage."""
    from roadparse.report.gallery import write_gallery

    path = write_gallery(workspace, settings, suggestions, warnings)
    log.info("cluster gallery: %s", path)


def suggest_by_majority(
    workspace: Workspace,
    settings: Settings,
    labels_dir: str | Path,
    *,
    tiles: list[Tile] | None = None,
    min_purity: float | None = None,
) -> tuple[Path, list[dict[str, Any]], list[str]]:
    """Writes ``cluster/merge_map.suggested.yaml`` by majority vote; returns (path, suggestions, warnings).

    The warnings (logged, and in the map's header) name each class that no cluster is
    suggested as, and why (:func:`~roadparse.merge.unnamed_classes`).
    """
    classes = load_classes(settings.classes)
    assignments = read_assignments(workspace)
    keys = mask_rows(assignments)
    clusters = assignments.column("cluster").to_numpy().astype(np.int64)
    section = settings.cluster
    tiles = tiles if tiles is not None else list_tiles(workspace)
    _, histograms = collect_coverage(workspace, tiles, labels_dir, classes, keys)
    purity = settings.cluster.min_purity if min_purity is None else min_purity
    n_clusters = cluster_count(workspace)
    suggestions = suggest_from_histograms(clusters, histograms, n_clusters, classes.names, purity)
    source = f"majority vote of the ground truth in {labels_dir}{_frames_note(tiles)}, min purity {purity}"
    unseen = section.suggest_unseen == "nearest" and any(not item.get("pixels") for item in suggestions)
    if unseen:
        features = np.asarray(clustering_features(workspace, section.layer, section))
        suggestions = name_unseen_clusters(suggestions, clusters, features)
        source += "; clusters without a labelled pixel named after their nearest named cluster"
    warnings = unnamed_classes(suggestions, histograms, clusters, classes.names)
    for line in warnings:
        log.warning("suggested merge map: %s", line)
    path = suggested_merge_map_path(workspace)
    atomic_write_text(path, merge_map_yaml(suggestions, classes.names, source, warnings))
    log.info("suggested merge map: %s", path)
    return path, suggestions, warnings


def _frames_note(tiles: list[Tile]) -> str:
    """Returns ' on the labels of N frames (a, b, ...)': which frames named the clusters, for the YAML header."""
    frames = sorted({Path(tile.frame).stem for tile in tiles})
    if not frames:
        return ""
    shown = ", ".join(frames[:5]) + (f", ... ({len(frames) - 5} more)" if len(frames) > 5 else "")
    return f" on the labels of {len(frames)} frame{'s' if len(frames) != 1 else ''} ({shown})"


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
    path = suggested_merge_map_path(workspace)
    atomic_write_text(
        path, merge_map_yaml(suggestions, classes.names, f"zero-shot {model} on typical crops")
    )
    write_gallery_safely(workspace, settings, suggestions)
    return path, suggestions
