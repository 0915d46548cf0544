"""Sweep: every embedded layer × every clustering method, scored as pseudo-labels (paper Tables 3-5).

For each (layer, method): cluster → merge map suggested by majority vote (labels name
clusters only) → the painted pseudo-labels → confusion against the ground truth summed
over the whole set (never averaged per image) → IoU per class, mIoU, PA and the share
of pixels left unlabelled. Painting is evaluated exactly from a per-tile coverage
summary computed once (see :class:`roadparse.merge.TileCoverage`), so a configuration
costs one clustering, not a repaint of every tile. Each finished configuration is
journalled, so an interrupted sweep resumes. Writes ``sweep/tables.md`` and
``sweep/results.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import (
    clustering_features,
    collect_coverage,
    embedded_layers,
    list_tiles,
    mask_rows,
    read_index,
    sweep_results_path,
    sweep_tables_path,
)
from roadparse.clustering import METHODS, cluster
from roadparse.config import Settings
from roadparse.io.labels import IGNORE_INDEX, load_classes
from roadparse.merge import (
    class_table,
    coverage_confusion,
    merge_map_from_suggestions,
    suggest_from_histograms,
)
from roadparse.metrics import markdown_table, scores
from roadparse.workspace import Workspace, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def _configuration(
    features: np.ndarray,
    method: str,
    settings: Settings,
    histograms: np.ndarray,
    coverages: list[tuple[Any, np.ndarray]],
    class_names: tuple[str, ...],
    min_purity: float,
    classes: Any,
) -> dict[str, Any]:
    section = settings.cluster
    result = cluster(
        features,
        method,
        section.n_clusters,
        seed=section.seed,
        normalize=section.normalize,
        n_neighbors=section.n_neighbors,
        sample_size=section.sample_size,
    )
    suggestions = suggest_from_histograms(
        result.labels, histograms, section.n_clusters, class_names, min_purity
    )
    merge_map = merge_map_from_suggestions(suggestions)
    mask_classes = class_table(merge_map, section.n_clusters, classes)[result.labels]
    confusion = np.zeros((len(class_names) + 1, len(class_names)), dtype=np.int64)
    for coverage, rows in coverages:
        local = np.where(rows >= 0, mask_classes[np.maximum(rows, 0)], IGNORE_INDEX).astype(
            np.uint8
        )
        confusion += coverage_confusion(coverage, local, len(class_names))
    return {
        "scores": scores(confusion, class_names),
        "merge_map": {str(k): v for k, v in merge_map.items()},
        "confusion": confusion.tolist(),
        "seconds": result.info["seconds"],
    }


def tables_markdown(
    results: dict[str, dict[str, Any]],
    layers: list[int],
    methods: list[str],
    class_names: tuple[str, ...],
) -> str:
    """Returns the markdown tables: per method, one row per layer; per layer, one row per method."""
    parts = ["# Pseudo-label assessment (IoU %, mIoU %, PA %, unlabelled % of labelled pixels)", ""]
    if len(layers) > 1:
        for method in methods:
            rows = {
                f"hidden {layer}": results[f"layer{layer}/{method}"]["scores"] for layer in layers
            }
            parts += [
                f"## {method} clustering for each layer",
                "",
                markdown_table(rows, class_names),
            ]
    for layer in layers:
        rows = {method: results[f"layer{layer}/{method}"]["scores"] for method in methods}
        parts += [f"## Clustering methods on layer {layer}", "", markdown_table(rows, class_names)]
    return "\n".join(parts)


def run(
    workspace: Workspace,
    settings: Settings,
    labels_dir: str | Path,
    *,
    layers: list[int] | None = None,
    methods: list[str] | None = None,
    min_purity: float | None = None,
) -> dict[str, Any]:
    """Runs the sweep; returns {"tables": markdown, "results": {"layer<L>/<method>": {...}}}.

    Raises:
        ValueError: no embeddings, an unknown method or layer, or no ground truth for any tile.
    """
    embed_manifest = workspace.require_manifest("embed")
    available = embedded_layers(workspace)
    layers = layers or available
    missing = sorted(set(layers) - set(available))
    if missing:
        raise ValueError(
            f"layers {missing} were not embedded (embedded: {available}); "
            "re-run `roadparse embed` with e.g. --set 'embed.layers=[1,2,3,4,5,6,7,8,9,10,11,12]'"
        )
    methods = methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown clustering methods {unknown}; choose from {', '.join(METHODS)}")
    purity = settings.cluster.min_purity if min_purity is None else min_purity
    classes = load_classes(settings.classes)
    index = read_index(workspace)
    keys = mask_rows(index)
    section = settings.cluster.model_dump(mode="json", exclude={"method", "layer", "gallery_size"})
    stage_run = workspace.begin(
        "sweep",
        {**section, "min_purity": purity},
        inputs={
            "embed": embed_manifest["fingerprint"],
            "labels": str(Path(labels_dir).resolve()),
            "classes": list(classes.names),
        },
    )
    done = stage_run.items()
    todo = [
        (layer, method)
        for layer in layers
        for method in methods
        if f"layer{layer}/{method}" not in done
    ]
    if todo:
        log.info("sweep: computing ground-truth coverage of every labelled tile")
        coverages, histograms = collect_coverage(
            workspace, list_tiles(workspace), labels_dir, classes, keys
        )
    for layer in sorted({layer for layer, _ in todo}):
        features = np.asarray(clustering_features(workspace, layer, settings.cluster))
        for method in (m for lay, m in todo if lay == layer):
            log.info("sweep: layer %d, %s", layer, method)
            record = _configuration(
                features, method, settings, histograms, coverages, classes.names, purity, classes
            )
            stage_run.record_item(f"layer{layer}/{method}", record)
    results = {
        key: value for key, value in stage_run.items().items() if key.split("/")[1] in methods
    }
    tables = tables_markdown(results, layers, methods, classes.names)
    atomic_write_text(sweep_tables_path(workspace), tables)
    atomic_write_json(
        sweep_results_path(workspace),
        {"labels": str(labels_dir), "min_purity": purity, "results": results},
    )
    stage_run.finish({"configurations": len(results)})
    return {"tables": tables, "results": results}
