"""What the review page shows, read once from a clustered work directory.

:class:`ReviewSession` holds the clusters (members, sizes, suggestion, saved choice),
cuts member pictures on demand from the tiles (a few tiles cached), splits clusters,
and paints the live preview. Pictures are cut from the tile images, in the tile's pixels
(resampled tiles: the working GSD), so the context window's ground size uses each tile's
recorded GSD; the preview's shares count the tiles' frame pixels (padding left out). Requests address masks by their row in the assignments
(an integer checked against the table), never by a path.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.artifacts import (
    Tile,
    cluster_count,
    clustering_features,
    list_tiles,
    mask_rows,
    merge_map_from_text,
    merge_map_path,
    read_assignments,
    read_index,
    read_merge_map,
    read_tile_masks,
    read_yaml_text,
    suggested_merge_map_path,
)
from roadparse.config import Settings
from roadparse.crops import MIN_CROP_SIDE, crop_mask, padded_box
from roadparse.io import rle as rle_io
from roadparse.io.images import read_image
from roadparse.io.labels import IGNORE_INDEX, load_classes
from roadparse.merge import (
    UNSEEN_NOTE,
    TileCoverage,
    class_table,
    coverage_confusion,
    paint_masks,
    split_class_ids,
)
from roadparse.merge_split import DISCARD, Split, split_points
from roadparse.review import views
from roadparse.review.choices import choices_payload
from roadparse.workspace import Workspace

log = logging.getLogger(__name__)

_GUESSED = re.compile(
    r"^\s*(?P<cluster>\d+):[^#\n]*#\s*" + re.escape(UNSEEN_NOTE) + r" (?P<nearest>\d+) \(cosine (?P<cosine>[-\d.]+)\)",
    re.MULTILINE,
)
"""A suggested-map line of a cluster named by ``cluster.suggest_unseen: nearest`` (see ``merge.merge_map_yaml``)."""
_WARNING = re.compile(r"^# WARNING: (?P<line>.*)$", re.MULTILINE)
"""A header line of the suggested map written by ``merge.merge_map_yaml`` for each of its warnings."""

THUMB = 168
"""Member thumbnails, display pixels (drawn at 120 CSS px: sharp on high-density screens)."""
TILE_VIEW = 640
PREVIEW_VIEW = 360


@dataclass(frozen=True)
class ReviewOptions:
    """How the page samples and draws (CLI options of ``roadparse review``)."""

    window_m: float = 1.0
    """Ground size of the context window around each member, metres."""
    members: int = 16
    """Members shown per cluster: half typical (nearest the centre), half random."""
    preview_tiles: int = 4
    coverage_tiles: int = 64
    """Tiles over which the unlabelled share is counted (all when fewer)."""
    seed: int = 0


class ReviewSession:
    """A clustered work directory opened for review."""

    def __init__(self, workspace: Workspace, settings: Settings, options: ReviewOptions = ReviewOptions()):
        """Reads assignments, index and tiles; raises ValueError when clustering has not run."""
        self.workspace, self.settings, self.options = workspace, settings, options
        self.classes = load_classes(settings.classes)
        self.palette = np.array(self.classes.palette(), np.uint8).reshape(256, 3)
        table = read_assignments(workspace)
        self.n_clusters = cluster_count(workspace)
        self.tile_ids = [str(v) for v in table.column("tile_id").to_pylist()]
        self.mask_ids = [str(v) for v in table.column("mask_id").to_pylist()]
        self.clusters = table.column("cluster").to_numpy().astype(np.int64)
        self.distances = table.column("distance").to_numpy().astype(np.float32)
        index = read_index(workspace)
        self.boxes = np.stack([index.column(c).to_numpy() for c in ("x0", "y0", "x1", "y1")], axis=1)
        self.areas = index.column("area").to_numpy().astype(np.int64)
        self.rows = mask_rows(table)
        self.tiles: dict[str, Tile] = {tile.id: tile for tile in list_tiles(workspace)}
        self.sizes = np.bincount(self.clusters, minlength=self.n_clusters)
        # the context window of tiles whose GSD the roi manifest does not record
        self.window_px = self._window_px(settings.predict.gsd_cm)
        self._lock = threading.Lock()
        self._tile_cache: OrderedDict[str, tuple[np.ndarray, list[dict[str, Any]]]] = OrderedDict()
        self._splits: dict[tuple[int, int, int], np.ndarray] = {}
        self._features: np.ndarray | None = None
        self.preview_ids = self._sample_tiles(options.preview_tiles)
        self._coverages: list[tuple[TileCoverage, np.ndarray]] | None = None
        self._coverage_lock = threading.Lock()

    def _window_px(self, gsd_cm: float | None) -> int:
        """Returns the context window side in pixels of ``gsd_cm`` cm (400 when unknown)."""
        return max(32, round(self.options.window_m * 100 / gsd_cm)) if gsd_cm else 400

    def tile_window_px(self, tile_id: str) -> int:
        """Returns the context window side in a tile's own pixels: ``window_m`` at the tile's GSD.

        Tiles resampled by ``roi.target_gsd_cm`` record the working GSD; tiles of runs that
        recorded none fall back to ``predict.gsd_cm``.
        """
        tile = self.tiles.get(tile_id)
        return self._window_px(tile.gsd_cm) if tile is not None and tile.gsd_cm else self.window_px

    # ---- clusters --------------------------------------------------------------------------

    def members(self, rows: np.ndarray, count: int, key: tuple[int, ...]) -> tuple[list[int], list[int]]:
        """Returns (typical, random) member rows among ``rows``: nearest the centre, then a sample.

        The sample is drawn from a Generator seeded by the options' seed and ``key`` (cluster,
        part), so a reload shows the same members.
        """
        rng = np.random.default_rng([self.options.seed, *key])
        n_typical = (count + 1) // 2
        ordered = rows[np.argsort(self.distances[rows], kind="stable")]
        typical, rest = ordered[:n_typical], ordered[n_typical:]
        sample = np.sort(rng.choice(rest, size=min(count - n_typical, len(rest)), replace=False)) if len(rest) else rest
        return [int(r) for r in typical], [int(r) for r in sample]

    def suggested(self) -> tuple[dict[int, str | Split], dict[int, str], list[str]]:
        """Returns (cluster -> suggested class or split, cluster -> why its suggestion is a guess, the map's warnings).

        All three come from one read of ``cluster/merge_map.suggested.yaml`` (({}, {}, []) when
        absent), so a suggestion rewritten while the page loads cannot mix two versions. A
        cluster with no labelled pixel named after its nearest named cluster
        (``cluster.suggest_unseen: nearest``) says so on its line; the page shows it, so a person
        knows which suggestions no label voted for. The header's "WARNING:" lines name the classes
        no cluster was suggested as (:func:`roadparse.merge.unnamed_classes`). A map that cannot
        be read or parsed is ignored with a warning in the log.
        """
        path = suggested_merge_map_path(self.workspace)
        if not path.exists():
            return {}, {}, []
        try:
            text = read_yaml_text(path, "suggested merge map")
            values = merge_map_from_text(text, path, self.n_clusters)
        except ValueError as exc:
            log.warning("review: ignoring the suggestion: %s", exc)
            return {}, {}, []
        notes = {
            int(match["cluster"]): (
                f"no labelled pixel: suggested after its nearest named cluster {match['nearest']} (cosine {match['cosine']})"
            )
            for match in _GUESSED.finditer(text)
        }
        return values, notes, [match["line"] for match in _WARNING.finditer(text)]

    def suggestion_entry(self, cluster_id: int, value: str | Split | None) -> dict[str, Any]:
        """Returns a cluster's suggestion as the page shows it: ``suggestion``, ``suggested_split``, ``suggestion_warning``.

        A suggested split whose parts still come out with the recorded sizes (recomputed as
        :meth:`split` and ``pseudolabel`` do) is ``suggested_split`` (its merge-map value) and
        its unsplit class the ``suggestion``; one that no longer reproduces, or names unknown
        classes, leaves the unsplit class alone suggested, with a warning saying why.
        """
        if not isinstance(value, Split):
            return {"suggestion": value, "suggested_split": None, "suggestion_warning": None}
        known = {*self.classes.names, DISCARD}
        unsplit = value.unsplit if value.unsplit in known else None
        problem = self._split_problem(cluster_id, value, known)
        if problem is None:
            return {"suggestion": unsplit, "suggested_split": value.to_yaml_value(), "suggestion_warning": None}
        instead = f"suggesting the unsplit class {unsplit}" if unsplit else "no unsplit class recorded: no suggestion"
        warning = f"the suggested split into {value.k} is not shown: {problem}; {instead}"
        log.warning("review: cluster %d: %s", cluster_id, warning)
        return {"suggestion": unsplit, "suggested_split": None, "suggestion_warning": warning}

    def _split_problem(self, cluster_id: int, split: Split, known: set[str]) -> str | None:
        """Returns why a suggested split cannot be offered (unknown part names, parts that differ), or None."""
        unknown = sorted(set(split.parts) - known)
        if unknown:
            return f"unknown class names {unknown}"
        try:
            parts = self.split_parts(cluster_id, split.k, split.seed)
        except ValueError as exc:
            return str(exc)
        sizes = [int(n) for n in np.bincount(parts, minlength=split.k)]
        if split.sizes is not None and tuple(sizes) != split.sizes:
            return f"it no longer reproduces (parts of {sizes} masks, the suggestion says {list(split.sizes)})"
        return None

    def saved(self) -> tuple[dict[str, Any] | None, str | None]:
        """Returns (the saved merge map as page choices, or None; a warning when it cannot be used)."""
        path = self.merge_map_path
        if not path.exists():
            return None, None
        try:
            merge_map = read_merge_map(path, self.n_clusters)
            class_table(merge_map, self.n_clusters, self.classes)
        except ValueError as exc:
            return None, f"{exc}; starting from the suggestion instead"
        return choices_payload(merge_map), None

    @property
    def merge_map_path(self) -> Path:
        """Returns ``WORKDIR/<pseudolabel.merge_map>``, where Save writes."""
        return merge_map_path(self.workspace, self.settings)

    def state(self) -> dict[str, Any]:
        """Returns everything the page needs to draw itself (JSON)."""
        suggestions, notes, suggestion_warnings = self.suggested()
        saved, warning = self.saved()
        order = sorted(range(self.n_clusters), key=lambda c: (-int(self.sizes[c]), c))
        clusters = []
        for cluster_id in order:
            rows = np.flatnonzero(self.clusters == cluster_id)
            typical, sample = self.members(rows, self.options.members, (cluster_id,))
            clusters.append(
                {
                    "id": cluster_id,
                    "size": int(self.sizes[cluster_id]),
                    "mean_area": float(self.areas[rows].mean()) if len(rows) else 0.0,
                    **self.suggestion_entry(cluster_id, suggestions.get(cluster_id)),
                    "suggestion_note": notes.get(cluster_id),
                    "typical": typical,
                    "random": sample,
                }
            )
        return {
            "workdir": str(self.workspace.root),
            "classes": [{"name": n, "color": list(c)} for n, c in zip(self.classes.names, self.classes.colors, strict=True)],
            "clusters": clusters,
            "saved": saved,
            "warning": warning,
            "suggestion_warnings": suggestion_warnings,
            "merge_map": str(self.merge_map_path),
            "window_m": self.options.window_m if self._ground_known() else None,
            "window_px": self.window_px,
        }

    def _ground_known(self) -> bool:
        """Returns whether every tile's window has a ground size (its GSD or ``predict.gsd_cm``)."""
        return bool(self.settings.predict.gsd_cm) or all(tile.gsd_cm for tile in self.tiles.values())

    # ---- pictures --------------------------------------------------------------------------

    def check_row(self, row: int) -> int:
        """Returns ``row`` when it is a mask row of the assignments; raises IndexError otherwise."""
        if not 0 <= row < len(self.clusters):
            raise IndexError(f"no mask row {row}")
        return row

    def _tile(self, tile_id: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        with self._lock:
            if tile_id in self._tile_cache:
                self._tile_cache.move_to_end(tile_id)
                return self._tile_cache[tile_id]
        tile = self.tiles.get(tile_id)
        if tile is None:
            raise IndexError(f"tile {tile_id} is not in the roi manifest")
        entry = (read_image(tile.path), read_tile_masks(self.workspace, tile_id))
        with self._lock:
            self._tile_cache[tile_id] = entry
            while len(self._tile_cache) > 24:
                self._tile_cache.popitem(last=False)
        return entry

    def _mask(self, row: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        image, masks = self._tile(self.tile_ids[row])
        record = next(m for m in masks if str(m["id"]) == self.mask_ids[row])
        return image, rle_io.decode(record["rle"]), record

    def member_jpeg(self, row: int, view: str) -> bytes:
        """Returns the JPEG of one member: ``context`` (fixed ground window) or ``crop`` (the encoder's)."""
        image, mask, record = self._mask(self.check_row(row))
        if view == "crop":
            height, width = image.shape[:2]
            box = padded_box(tuple(record["bbox"]), MIN_CROP_SIDE, width, height)
            background = mask if self.settings.embed.mask_background else None
            crop = crop_mask(image, box, self.settings.embed.crop_size, background)
            return views.encode_image(crop)
        side = self.tile_window_px(self.tile_ids[row])
        return views.encode_image(views.context_window(image, mask, tuple(record["bbox"]), side, THUMB))

    def tile_jpeg(self, row: int) -> bytes:
        """Returns the JPEG of a member's tile with every mask of its cluster highlighted."""
        row = self.check_row(row)
        image, masks = self._tile(self.tile_ids[row])
        cluster_id = self.clusters[row]
        rows = self._tile_rows(self.tile_ids[row], masks)
        decoded = [
            rle_io.decode(m["rle"])
            for m, r in zip(masks, rows, strict=True)
            if r >= 0 and self.clusters[r] == cluster_id
        ]
        current = rle_io.decode(next(m for m in masks if str(m["id"]) == self.mask_ids[row])["rle"])
        return views.encode_image(views.highlight_tile(image, decoded, current, TILE_VIEW))

    # ---- split -----------------------------------------------------------------------------

    def split(self, cluster_id: int, k: int, seed: int = 0) -> dict[str, Any]:
        """Returns a cluster's split into ``k`` parts: sizes and typical/random members per part.

        Raises:
            IndexError: unknown cluster. ValueError: bad k for this cluster.
        """
        if not 0 <= cluster_id < self.n_clusters:
            raise IndexError(f"no cluster {cluster_id}")
        rows = np.flatnonzero(self.clusters == cluster_id)
        parts = self.split_parts(cluster_id, k, seed)
        entries = []
        for part in range(k):
            typical, sample = self.members(rows[parts == part], max(4, self.options.members // 2), (cluster_id, k, part))
            entries.append({"part": part, "size": int((parts == part).sum()), "typical": typical, "random": sample})
        return {"cluster": cluster_id, "k": k, "seed": seed, "sizes": [e["size"] for e in entries], "parts": entries}

    def split_parts(self, cluster_id: int, k: int, seed: int) -> np.ndarray:
        """Returns the (n,) int64 part of each member of a cluster (cached), as pseudolabel computes it."""
        key = (cluster_id, k, seed)
        if key not in self._splits:
            if self._features is None:
                section = self.settings.cluster
                self._features = np.asarray(clustering_features(self.workspace, section.layer, section))
            rows = np.flatnonzero(self.clusters == cluster_id)
            self._splits[key] = split_points(self._features[rows], k, seed)
        return self._splits[key]

    # ---- preview ---------------------------------------------------------------------------

    def row_classes(self, merge_map: dict[int, str | Split]) -> np.ndarray:
        """Returns the (N,) uint8 class of every mask row under a (complete or partial) merge map."""
        full = {c: merge_map.get(c, "discard") for c in range(self.n_clusters)}
        out = class_table(full, self.n_clusters, self.classes)[self.clusters]
        for cluster_id, value in full.items():
            if isinstance(value, Split):
                parts = self.split_parts(cluster_id, value.k, value.seed)
                out[self.clusters == cluster_id] = split_class_ids(value, parts, self.classes)
        return out

    def _sample_tiles(self, count: int) -> list[str]:
        with_masks = sorted(set(self.tile_ids))
        if len(with_masks) <= count:
            return with_masks
        rng = np.random.default_rng([self.options.seed, count])
        return sorted(rng.choice(with_masks, size=count, replace=False).tolist())

    def _tile_rows(self, tile_id: str, masks: list[dict[str, Any]]) -> np.ndarray:
        return np.array([self.rows.get((tile_id, str(m["id"])), -1) for m in masks], dtype=np.int64)

    def coverages(self) -> list[tuple[TileCoverage, np.ndarray]]:
        """Returns (coverage, mask rows) of the tiles the unlabelled share is counted on (computed once)."""
        with self._coverage_lock:
            return self._compute_coverages()

    def _compute_coverages(self) -> list[tuple[TileCoverage, np.ndarray]]:
        if self._coverages is None:
            from roadparse.merge import tile_coverage

            out = []
            for tile_id in self._sample_tiles(self.options.coverage_tiles):
                image, masks = self._tile(tile_id)
                # every frame pixel "is" class 0: the confusion's column 0 counts pixels per painted class;
                # padding past the frame edge is ignored (no mask can cover it)
                zeros = np.full(image.shape[:2], IGNORE_INDEX, np.uint8)
                valid = self.tiles[tile_id].valid
                zeros[: valid[1], : valid[0]] = 0
                coverage = tile_coverage(masks, zeros, len(self.classes))
                out.append((coverage, self._tile_rows(tile_id, masks)))
            self._coverages = out
        return self._coverages

    def preview(self, merge_map: dict[int, str | Split]) -> dict[str, Any]:
        """Returns the unlabelled share and per-class shares under ``merge_map``, and overlay images."""
        row_classes = self.row_classes(merge_map)
        n_classes = len(self.classes)
        counts = np.zeros(n_classes + 1, np.int64)  # pixels per painted class, unlabelled last
        for coverage, rows in self.coverages():
            mask_classes = np.where(rows >= 0, row_classes[np.maximum(rows, 0)], IGNORE_INDEX)
            counts += coverage_confusion(coverage, mask_classes.astype(np.uint8), n_classes)[:, 0]
        total = int(counts.sum())
        images = []
        for tile_id in self.preview_ids:
            image, masks = self._tile(tile_id)
            rows = self._tile_rows(tile_id, masks)
            classes = [int(row_classes[r]) if r >= 0 else IGNORE_INDEX for r in rows]
            label = paint_masks(image.shape[0], image.shape[1], masks, classes)
            overlay = views.label_overlay(image, label, self.palette, PREVIEW_VIEW)
            images.append({"tile": tile_id, "src": "data:image/jpeg;base64," + base64.b64encode(views.encode_image(overlay)).decode("ascii")})
        return {
            "unlabelled": round(int(counts[n_classes]) / total, 4) if total else 0.0,
            "shares": {name: round(int(counts[i]) / total, 4) if total else 0.0 for i, name in enumerate(self.classes.names)},
            "tiles_counted": len(self.coverages()),
            "images": images,
        }
