"""Readers for the artifacts one stage leaves for the next (formats documented in docs/artifacts.md).

Stages write their own artifacts; everything downstream reads them through here, so
a format lives in one place.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import yaml
from tqdm.auto import tqdm

from roadparse import yamlstrict
from roadparse.clustering import append_statistics
from roadparse.config import ClusterSettings, Settings
from roadparse.io.labels import IGNORE_INDEX, ClassSet, read_label_png
from roadparse.merge import TileCoverage, parse_merge_map, tile_coverage
from roadparse.merge_split import Split
from roadparse.summaries import (
    ClusterSummary,
    EmbedSummary,
    MasksSummary,
    PseudolabelSummary,
    RoiSummary,
    SelftrainSummary,
    StageName,
    StageSummary,
    SweepSummary,
)
from roadparse.workspace import StageManifest, Workspace, atomic_write_json, fingerprint

SUGGESTED = "merge_map.suggested.yaml"
"""File name of the merge map the cluster stage suggests, in ``cluster/``."""


@dataclass(frozen=True)
class Tile:
    """One sub-image cut from a frame by the ``roi`` stage."""

    id: str
    path: Path
    frame: str
    offset: tuple[int, int]
    """(x, y) of the tile's top-left corner in the full-resolution frame."""
    size: tuple[int, int]
    """(width, height) of the tile image."""
    valid: tuple[int, int]
    """(width, height) of the part that holds frame pixels (the rest is padding)."""
    gsd_cm: float | None = None
    """ground sampling distance of the tile's pixels (None: a run from before GSDs were recorded)"""
    scale: float = 1.0
    """tile pixels per frame pixel (not 1 when ``roi.target_gsd_cm`` resampled the frame)"""
    working_offset: tuple[int, int] | None = None
    """(x, y) of the top-left corner in the resampled frame (None: not resampled, equal to ``offset``)"""

    @property
    def position(self) -> tuple[int, int]:
        """Returns the (x, y) of the tile's top-left corner in working pixels (the resolution it was cut at)."""
        return self.working_offset if self.working_offset is not None else self.offset

    def frame_box(self) -> tuple[int, int, int, int]:
        """Returns the (x0, y0, x1, y1) frame pixels under the tile's valid part (rounded outward)."""
        x, y = self.offset
        return x, y, x + int(np.ceil(self.valid[0] / self.scale)), y + int(np.ceil(self.valid[1] / self.scale))


def list_tiles(workspace: Workspace) -> list[Tile]:
    """Returns every tile of the finished ``roi`` stage, in a stable order."""
    manifest = workspace.require_manifest("roi")
    root = workspace.root / "roi"
    tiles = []
    for frame_id in sorted(manifest["items"]):
        record = manifest["items"][frame_id]
        for tile in record.get("tiles", []):
            tiles.append(
                Tile(
                    id=tile["id"],
                    path=root / tile["path"],
                    frame=record["frame"],
                    offset=tuple(tile["offset"]),
                    size=tuple(tile["size"]),
                    valid=tuple(tile.get("valid", tile["size"])),
                    gsd_cm=tile.get("gsd_cm"),
                    scale=float(tile.get("scale", 1.0)),
                    working_offset=tuple(tile["working_offset"]) if "working_offset" in tile else None,
                )
            )
    return tiles


@dataclass(frozen=True)
class Frame:
    """One input frame of the ``roi`` stage and the tiles cut from it."""

    id: str
    path: Path
    size: tuple[int, int]
    """(width, height) of the full-resolution frame"""
    gsd_cm: float | None
    """ground sampling distance of the frame's own pixels (None: a run from before GSDs were recorded)"""
    tiles: tuple[Tile, ...]


def list_frames(workspace: Workspace) -> list[Frame]:
    """Returns every frame of the finished ``roi`` stage with its tiles (frames without a tile included)."""
    manifest = workspace.require_manifest("roi")
    by_frame: dict[str, list[Tile]] = {}
    for tile in list_tiles(workspace):
        by_frame.setdefault(tile.frame, []).append(tile)
    frames = []
    for frame_id in sorted(manifest["items"]):
        record = manifest["items"][frame_id]
        if "frame_size" not in record:
            raise ValueError(
                f"{workspace.root / 'roi' / 'manifest.json'}: frame {frame_id} has no frame_size; "
                "run `roadparse roi` again with this version"
            )
        gsd = record.get("gsd", {}).get("cm")
        frames.append(
            Frame(
                id=frame_id,
                path=Path(record["frame"]),
                size=(int(record["frame_size"][0]), int(record["frame_size"][1])),
                gsd_cm=float(gsd) if gsd is not None else None,
                tiles=tuple(by_frame.get(record["frame"], [])),
            )
        )
    return frames


def masks_path(workspace: Workspace, tile_id: str) -> Path:
    """Returns the path of a tile's mask file ``masks/<tile_id>.json``."""
    return workspace.root / "masks" / f"{tile_id}.json"


def read_tile_masks(workspace: Workspace, tile_id: str) -> list[dict[str, Any]]:
    """Returns a tile's masks: dicts with id, rle, bbox (x0, y0, x1, y1), area, scores, point."""
    path = masks_path(workspace, tile_id)
    return json.loads(path.read_text())["masks"]


def features_path(workspace: Workspace, layer: int) -> Path:
    """Returns the path of the (N, D) float32 feature matrix of one encoder layer."""
    return workspace.root / "embed" / f"features_layer{layer}.npy"


def index_path(workspace: Workspace) -> Path:
    """Returns the path of the embedding index (one row per mask, in feature-row order)."""
    return workspace.root / "embed" / "index.parquet"


def embedded_layers(workspace: Workspace) -> list[int]:
    """Returns the layers with a feature file ``embed/features_layer<L>.npy``, sorted."""
    found = (path.stem.removeprefix("features_layer") for path in (workspace.root / "embed").glob("features_layer*.npy"))
    return sorted(int(value) for value in found if value.isdigit())


def read_features(workspace: Workspace, layer: int) -> np.ndarray:
    """Returns the (N, D) float32 features of ``layer``; raises naming the layers that exist."""
    path = features_path(workspace, layer)
    if not path.exists():
        have = ", ".join(str(layer) for layer in embedded_layers(workspace))
        raise ValueError(f"{path}: no features for layer {layer}; embedded layers: {have or 'none'}")
    return np.load(path, mmap_mode="r")


def colour_path(workspace: Workspace) -> Path:
    """Returns the path of the (N, 6) float32 mask colour statistics (CIELab mean, std / 128), feature-row order."""
    return workspace.root / "embed" / "colour.npy"


def read_colour(workspace: Workspace) -> np.ndarray:
    """Returns the (N, 6) float32 colour statistics of every embedded mask."""
    return _mask_statistics(colour_path(workspace), "no mask colour statistics; re-run `roadparse embed`")


def shape_path(workspace: Workspace) -> Path:
    """Returns the path of the (N, 3) float32 mask shapes (log10 cm², log10 width cm, elongation), feature-row order."""
    return workspace.root / "embed" / "shape.npy"


def read_shape(workspace: Workspace) -> np.ndarray:
    """Returns the (N, 3) float32 physical shape of every embedded mask."""
    path = shape_path(workspace)
    return _mask_statistics(path, f"no mask shapes (the embedding predates them); delete {path.parent} and re-run `roadparse embed`")


def surround_path(workspace: Workspace) -> Path:
    """Returns the path of the (N, 6) float32 colour statistics of a ring around each mask, feature-row order."""
    return workspace.root / "embed" / "surround.npy"


def texture_path(workspace: Workspace) -> Path:
    """Returns the path of the (N, 5) float32 texture of every mask at physical scales, feature-row order."""
    return workspace.root / "embed" / "texture.npy"


TEXTURE_VERSION = 1
"""The definition of ``texture.npy`` (scales, statistics): a record of another version is recomputed."""


def statistics_record_path(workspace: Workspace) -> Path:
    """Returns the path of ``embed/statistics.json``: the ``surround_cm``, texture version and embedding
    fingerprint that ``surround.npy`` and ``texture.npy`` were made for."""
    return workspace.root / "embed" / "statistics.json"


def read_statistics_record(workspace: Workspace) -> dict[str, Any]:
    """Returns ``embed/statistics.json`` ({} when there is none)."""
    path = statistics_record_path(workspace)
    return json.loads(path.read_text()) if path.exists() else {}


def read_surround(workspace: Workspace) -> np.ndarray:
    """Returns the (N, 6) float32 colour statistics of each embedded mask's surround."""
    path = surround_path(workspace)
    return _mask_statistics(path, "no mask surrounds (the embedding predates them); re-run `roadparse embed`: it adds them without re-encoding")


def read_texture(workspace: Workspace) -> np.ndarray:
    """Returns the (N, 5) float32 texture of each embedded mask."""
    return _mask_statistics(texture_path(workspace), "no mask textures (the embedding predates them); re-run `roadparse embed`: it adds them without re-encoding")


def _mask_statistics(path: Path, missing: str) -> np.ndarray:
    """Returns the array saved at ``path``; raises ValueError('<path>: <missing>') when there is none."""
    if not path.exists():
        raise ValueError(f"{path}: {missing}")
    return np.load(path)


def read_index(workspace: Workspace) -> Any:
    """Returns the embedding index as a pyarrow Table (mask_id, tile_id, x0, y0, x1, y1, area)."""
    import pyarrow.parquet as pq

    return pq.read_table(index_path(workspace))


def read_yaml_text(path: str | Path, what: str) -> str:
    """Returns the UTF-8 text of the YAML file ``path`` (unparsed); every way of failing is a ValueError naming it and ``what`` it is."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a {what} file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8); a {what} is YAML") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _parse_yaml(text: str, path: Path, what: str) -> Any:
    """Returns the parsed YAML ``text`` read from ``path``; invalid YAML is a ValueError naming it."""
    try:
        return yamlstrict.load(text)  # duplicate keys, boolean or fractional keys, aliases: refused by line
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: {what} is not valid YAML: {exc}") from None


def read_merge_map(path: str | Path, n_clusters: int | None = None) -> dict[int, str | Split]:
    """Returns cluster id -> class name, ``"discard"`` or a :class:`Split` from a merge-map YAML.

    The file is ``clusters: {0: road, 5: {split: 2, parts: [road, discard]}}``; maps without
    splits (the original format) read as before.

    Raises:
        ValueError: the file is missing or malformed, or (when ``n_clusters`` is given)
            a cluster id is unknown or missing; the message lists the offending ids.
    """
    path = Path(path)
    return merge_map_from_text(read_yaml_text(path, "merge map"), path, n_clusters)


def merge_map_from_text(text: str, path: str | Path, n_clusters: int | None = None) -> dict[int, str | Split]:
    """Returns the merge map in ``text``, the contents of ``path`` (named in errors), checked as :func:`read_merge_map` does.

    For a reader that also needs the file's comments (the review page) and so must parse the
    same bytes it read them from.
    """
    path = Path(path)
    mapping = parse_merge_map(_parse_yaml(text, path, "merge map"), str(path))
    if n_clusters is not None:
        unknown = sorted(k for k in mapping if not 0 <= k < n_clusters)
        missing = sorted(set(range(n_clusters)) - set(mapping))
        if unknown:
            raise ValueError(f"{path}: unknown cluster ids {unknown} (clusters are 0..{n_clusters - 1})")
        if missing:
            raise ValueError(f"{path}: clusters {missing} are not mapped; map each to a class or 'discard'")
    return mapping


def tile_ground_truth(tile: Tile, labels_dir: str | Path) -> np.ndarray:
    """Returns the (h, w) uint8 ground truth under a tile, cropped from its frame's label PNG.

    The frame label is ``labels_dir/<frame stem>.png``; padding is IGNORE_INDEX. A resampled
    tile (``scale`` != 1) gets the label sampled at its pixel centres (nearest).
    """
    label = read_label_png(Path(labels_dir) / f"{Path(tile.frame).stem}.png")
    return sample_label(label, tile)


def sample_label(label: np.ndarray, tile: Tile) -> np.ndarray:
    """Returns the (h, w) uint8 part of a frame-sized ``label`` under ``tile`` (nearest; outside the frame IGNORE_INDEX)."""
    x, y = tile.offset
    width, height = tile.size
    out = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    if tile.scale == 1:
        crop = label[y : y + height, x : x + width]
        out[: crop.shape[0], : crop.shape[1]] = crop
        return out
    rows = y + np.floor((np.arange(height) + 0.5) / tile.scale).astype(np.int64)
    cols = x + np.floor((np.arange(width) + 0.5) / tile.scale).astype(np.int64)
    inside_rows, inside_cols = rows < label.shape[0], cols < label.shape[1]
    out[np.ix_(inside_rows, inside_cols)] = label[np.ix_(rows[inside_rows], cols[inside_cols])]
    return out


def frame_label_part(label: np.ndarray, tile: Tile, frame_size: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Returns a tile's (h, w) label in frame pixels: ((x0, y0, x1, y1) frame box, the label there).

    The inverse of :func:`sample_label`: each frame pixel under the tile's valid part takes
    the label of the tile pixel holding its centre (nearest), so a resampled tile's labels
    land on the frame grid; padding is left out and the box is clipped to the frame.
    """
    x, y = tile.offset
    valid = label[: tile.valid[1], : tile.valid[0]]
    _, _, x1, y1 = tile.frame_box()
    x1, y1 = min(x1, frame_size[0]), min(y1, frame_size[1])
    if tile.scale == 1:
        return (x, y, x1, y1), valid[: y1 - y, : x1 - x]
    rows = np.minimum(np.floor((np.arange(y1 - y) + 0.5) * tile.scale).astype(np.int64), valid.shape[0] - 1)
    cols = np.minimum(np.floor((np.arange(x1 - x) + 0.5) * tile.scale).astype(np.int64), valid.shape[1] - 1)
    return (x, y, x1, y1), valid[np.ix_(rows, cols)]


def gallery_path(workspace: Workspace) -> Path:
    """Returns the path of the cluster gallery ``cluster/gallery/index.html``."""
    return workspace.root / "cluster" / "gallery" / "index.html"


def pseudo_label_dir(workspace: Workspace) -> Path:
    """Returns the folder of the pseudo-label PNGs, ``pseudolabel/labels``."""
    return workspace.root / "pseudolabel" / "labels"


def selftrain_dir(workspace: Workspace) -> Path:
    """Returns the self-training stage's folder (its manifest's ``model`` is relative to it)."""
    return workspace.root / "selftrain"


def round_dirs(workspace: Workspace) -> list[tuple[int, Path]]:
    """Returns (round number, folder) of every self-training round folder ``selftrain/round_<r>``, in order."""
    found = []
    for path in selftrain_dir(workspace).glob("round_*"):
        suffix = path.name.removeprefix("round_")
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def best_model_dir(workspace: Workspace) -> Path | None:
    """Returns the model folder the finished self-training hands on (its best round's ``model/``), or None
    when the pseudo-labels were best (round 0).

    Raises:
        ValueError: self-training has not finished.
    """
    model = stage_summary(workspace, "selftrain")["model"]
    return selftrain_dir(workspace) / model if model else None


def merge_map_path(workspace: Workspace, settings: Settings) -> Path:
    """Returns ``WORKDIR/<pseudolabel.merge_map>``: the merge map the user writes (or the review page saves)."""
    return workspace.root / settings.pseudolabel.merge_map


def run_record_path(workspace: Workspace) -> Path:
    """Returns the path of ``run.json``: the command that started the run and the settings it wrote."""
    return workspace.root / "run.json"


def record_run_command(workspace: Workspace, command: Sequence[str] | None) -> None:
    """Records ``command`` (argv, e.g. ``["roadparse", "run", "/abs/my.yaml"]``) as the one that continues the
    run, with a fingerprint of the ``settings.yaml`` just written; None forgets any earlier record."""
    path = run_record_path(workspace)
    if command is None:
        path.unlink(missing_ok=True)
        return
    atomic_write_json(path, {"command": list(command), "settings": fingerprint(workspace.read_settings())})


def continue_command(workspace: Workspace) -> str:
    """Returns the shell command that continues the run once the merge map is written.

    The recorded ``roadparse run ...`` command when the run has one and its settings are still
    the work directory's (a stage run since with other settings makes it stale), else the
    stage commands, which read ``WORKDIR/settings.yaml``.
    """
    path = run_record_path(workspace)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        record = {}
    command = record.get("command") if isinstance(record, dict) else None
    if command and record.get("settings") == fingerprint(workspace.read_settings()):
        return shlex.join(str(part) for part in command)
    root = shlex.quote(str(workspace.root.resolve()))
    return f"roadparse pseudolabel {root} && roadparse selftrain {root}"


def review_command(workspace: Workspace) -> str:
    """Returns the shell command that opens the review page of the work directory's clusters."""
    return f"roadparse review {shlex.quote(str(workspace.root.resolve()))}"


def suggested_merge_map_path(workspace: Workspace) -> Path:
    """Returns the path of ``cluster/merge_map.suggested.yaml`` (written by the cluster stage)."""
    return workspace.root / "cluster" / SUGGESTED


def cluster_count(workspace: Workspace) -> int:
    """Returns the number of clusters of the finished ``cluster`` stage.

    Raises:
        ValueError: the cluster stage has not finished.
    """
    return int(stage_summary(workspace, "cluster")["n_clusters"])


def sweep_tables_path(workspace: Workspace) -> Path:
    """Returns the path of ``sweep/tables.md`` (the sweep's scores as Markdown tables)."""
    return workspace.root / "sweep" / "tables.md"


def sweep_results_path(workspace: Workspace) -> Path:
    """Returns the path of ``sweep/results.json`` (every configuration's scores)."""
    return workspace.root / "sweep" / "results.json"


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


def mask_key(tile_id: Any, mask_id: Any) -> tuple[str, str]:
    """Returns the key that identifies a mask across artifacts: (tile id, mask id), as strings."""
    return str(tile_id), str(mask_id)


def mask_rows(table: Any) -> dict[tuple[str, str], int]:
    """Returns mask key -> row of a table with ``tile_id`` and ``mask_id`` columns (index, assignments)."""
    pairs = zip(table.column("tile_id").to_pylist(), table.column("mask_id").to_pylist(), strict=True)
    return {mask_key(t, m): row for row, (t, m) in enumerate(pairs)}


def clustering_features(workspace: Workspace, layer: int, section: ClusterSettings) -> np.ndarray:
    """Returns the (N, D) features of ``layer`` that get clustered, with the colour statistics, physical
    shapes, colour contrasts with the surround and textures appended as ``section.colour_weight`` /
    ``section.shape_weight`` / ``section.contrast_weight`` / ``section.texture_weight`` ask."""
    features = read_features(workspace, layer)
    if not (section.colour_weight or section.shape_weight or section.contrast_weight or section.texture_weight):
        return features
    colour = read_colour(workspace) if section.colour_weight or section.contrast_weight else None
    return append_statistics(
        features,
        colour, section.colour_weight,
        read_shape(workspace) if section.shape_weight else None, section.shape_weight,
        None if colour is None or not section.contrast_weight else colour - read_surround(workspace), section.contrast_weight,
        read_texture(workspace) if section.texture_weight else None, section.texture_weight,
    )


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


@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["roi"]) -> RoiSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["masks"]) -> MasksSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["embed"]) -> EmbedSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["cluster"]) -> ClusterSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["pseudolabel"]) -> PseudolabelSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["selftrain"]) -> SelftrainSummary: ...
@overload
def stage_summary(source: Workspace | StageManifest, stage: Literal["sweep"]) -> SweepSummary: ...
def stage_summary(source: Workspace | StageManifest, stage: StageName) -> StageSummary:
    """Returns the typed summary of ``stage``: from its finished manifest in a work directory, or from a manifest.

    Raises:
        ValueError: the stage has not finished in the work directory, or the manifest is another stage's.
    """
    manifest = source.require_manifest(stage) if isinstance(source, Workspace) else source
    if manifest["stage"] != stage:
        raise ValueError(f"a manifest of stage '{manifest['stage']}', not of '{stage}'")
    return manifest["summary"]
