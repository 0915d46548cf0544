"""Cluster gallery: one HTML page to do the merge step fast (``cluster/gallery/index.html``).

One row per cluster, largest first: id, size, mean mask area, the suggested class
(if any), its most typical crops (nearest the cluster centre) and a random sample,
each cut from its tile by the mask's box with the mask outline drawn. A ready-to-edit
merge-map YAML is at the top of the page. Thumbnails are JPEG files beside the page;
:func:`render_gallery_fragment` inlines them for the self-contained HTML report.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from roadparse.artifacts import (
    cluster_count,
    gallery_path,
    list_tiles,
    read_assignments,
    read_tile_masks,
)
from roadparse.io import rle as rle_io
from roadparse.io.images import ImageReadError, read_image
from roadparse.merge import DISCARD, format_merge_map
from roadparse.merge_split import Split, parse_split
from roadparse.workspace import Workspace, atomic_output, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

THUMB = 160
WARNINGS_FILE = "warnings.json"
"""Beside ``clusters.json``: the suggestion's warnings (:func:`roadparse.merge.unnamed_classes`), a JSON list."""
_OUTLINE = np.array([255, 0, 255], dtype=np.uint8)  # magenta: rare on roads, unlike yellow
_STYLE = """<style>
.rp-gallery{font-family:sans-serif} .rp-row{display:flex;align-items:flex-start;gap:12px;border-top:1px solid #ccc;padding:8px 0}
.rp-meta{min-width:170px;font-size:14px} .rp-meta b{font-size:20px} .rp-thumbs{display:flex;flex-wrap:wrap;gap:4px}
.rp-thumbs img{width:THUMBpx;height:THUMBpx;object-fit:contain;background:#222} .rp-sep{width:3px;background:#888;align-self:stretch}
.rp-discard{color:#b00} .rp-warning{background:#fff3cd;border:1px solid #e0b000;padding:4px 10px;margin:8px 0} pre.rp-yaml{background:#f4f4f4;padding:8px;max-height:300px;overflow:auto}
</style>""".replace("THUMB", str(THUMB))


def select_members(
    clusters: np.ndarray,
    distances: np.ndarray,
    n_clusters: int,
    per_cluster: int,
    rng: np.random.Generator,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Returns cluster -> (typical rows, random rows): half the crops nearest the centre, half a random sample of the rest."""
    out = {}
    n_typical = max(1, (per_cluster + 1) // 2)
    for cluster_id in range(n_clusters):
        rows = np.flatnonzero(clusters == cluster_id)
        typical = rows[np.argsort(distances[rows], kind="stable")[:n_typical]]
        rest = np.setdiff1d(rows, typical)
        sample = (
            np.sort(rng.choice(rest, size=min(per_cluster - n_typical, len(rest)), replace=False))
            if len(rest)
            else rest
        )
        out[cluster_id] = (typical, sample)
    return out


def cut_crop(
    tile_image: np.ndarray, mask: dict[str, Any], outline: bool = True, margin: float = 0.1
) -> np.ndarray:
    """Returns the (h, w, 3) uint8 crop of a mask's box (plus a margin), its outline drawn in magenta."""
    x0, y0, x1, y1 = (int(v) for v in mask["bbox"])
    height, width = tile_image.shape[:2]
    pad_x, pad_y = int((x1 - x0) * margin) + 1, int((y1 - y0) * margin) + 1
    x0, y0, x1, y1 = (
        max(0, x0 - pad_x),
        max(0, y0 - pad_y),
        min(width, x1 + pad_x),
        min(height, y1 + pad_y),
    )
    crop = tile_image[y0:y1, x0:x1].copy()
    if outline and crop.size:
        inside = rle_io.decode(mask["rle"])[y0:y1, x0:x1]
        edge = inside.copy()
        edge[1:-1, 1:-1] &= ~(
            inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        )
        thick = max(1, max(crop.shape[:2]) // THUMB)
        for _ in range(thick - 1):  # keep the outline visible after downscaling
            edge[1:] |= edge[:-1]
            edge[:, 1:] |= edge[:, :-1]
        crop[edge] = _OUTLINE
    return crop


def _thumbnail(crop: np.ndarray) -> Image.Image:
    image = Image.fromarray(crop)
    scale = THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # small crops are enlarged with hard pixels so outlines stay crisp
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return image.resize(size, resample)


def _load_crops(
    workspace: Workspace, wanted: dict[str, list[str]], outline: bool
) -> dict[tuple[str, str], np.ndarray]:
    """Returns (tile id, mask id) -> crop for the wanted masks, reading each tile once."""
    tiles = {tile.id: tile for tile in list_tiles(workspace)}
    crops: dict[tuple[str, str], np.ndarray] = {}
    for tile_id, mask_ids in wanted.items():
        tile = tiles.get(tile_id)
        if tile is None:
            log.warning(
                "gallery: tile %s is not in the roi manifest; its crops are left out", tile_id
            )
            continue
        try:
            image = read_image(tile.path)
            masks = {str(m["id"]): m for m in read_tile_masks(workspace, tile_id)}
        except (ImageReadError, OSError, ValueError) as exc:
            log.warning("gallery: cannot read tile %s: %s", tile_id, exc)
            continue
        for mask_id in mask_ids:
            if mask_id in masks:
                crops[(tile_id, mask_id)] = cut_crop(image, masks[mask_id], outline)
    return crops


def _assignments(workspace: Workspace) -> tuple[list[str], list[str], np.ndarray, np.ndarray, int]:

    table = read_assignments(workspace)
    n_clusters = cluster_count(workspace)
    return (
        [str(v) for v in table.column("tile_id").to_pylist()],
        [str(v) for v in table.column("mask_id").to_pylist()],
        table.column("cluster").to_numpy().astype(np.int64),
        table.column("distance").to_numpy().astype(np.float32),
        n_clusters,
    )


def cluster_crops(
    workspace: Workspace, per_cluster: int, outline: bool = False
) -> dict[int, list[np.ndarray]]:
    """Returns cluster -> the (h, w, 3) uint8 crops of its ``per_cluster`` most typical masks."""
    tile_ids, mask_ids, clusters, distances, n_clusters = _assignments(workspace)
    chosen = {
        c: np.argsort(np.where(clusters == c, distances, np.inf), kind="stable")[
            : min(per_cluster, int((clusters == c).sum()))
        ]
        for c in range(n_clusters)
    }
    wanted: dict[str, list[str]] = defaultdict(list)
    for rows in chosen.values():
        for row in rows:
            wanted[tile_ids[row]].append(mask_ids[row])
    crops = _load_crops(workspace, wanted, outline)
    return {
        c: [crops[k] for k in ((tile_ids[r], mask_ids[r]) for r in rows) if k in crops]
        for c, rows in chosen.items()
    }


def write_gallery(
    workspace: Workspace, settings: Any, suggestions: list[dict[str, Any]] | None = None, warnings: Sequence[str] = ()
) -> Path:
    """Writes ``cluster/gallery/index.html`` with thumbnails, ``clusters.json`` and ``warnings.json`` (what
    the suggestion could not name, shown above the clusters); returns the page path."""
    tile_ids, mask_ids, clusters, distances, n_clusters = _assignments(workspace)
    from roadparse.artifacts import read_index

    areas = read_index(workspace).column("area").to_numpy().astype(np.float64)
    rng = np.random.default_rng(settings.cluster.seed)
    members = select_members(clusters, distances, n_clusters, settings.cluster.gallery_size, rng)
    wanted: dict[str, list[str]] = defaultdict(list)
    for typical, sample in members.values():
        for row in (*typical, *sample):
            wanted[tile_ids[row]].append(mask_ids[row])
    crops = _load_crops(workspace, wanted, outline=True)
    folder = gallery_path(workspace).parent
    by_cluster = {int(s["cluster"]): s for s in suggestions or []}
    entries: list[dict[str, Any]] = []
    for cluster_id, (typical, sample) in members.items():
        files: dict[str, list[str]] = {"typical": [], "random": []}
        for kind, rows in (("typical", typical), ("random", sample)):
            for row in rows:
                crop = crops.get((tile_ids[row], mask_ids[row]))
                if crop is None or not crop.size:
                    continue
                name = f"c{cluster_id:03d}_{kind[0]}{len(files[kind]):02d}.jpg"
                with atomic_output(folder / name) as tmp:
                    _thumbnail(crop).save(tmp, format="JPEG", quality=85)
                files[kind].append(name)
        in_cluster = clusters == cluster_id
        entries.append(
            {
                "cluster": cluster_id,
                "size": int(in_cluster.sum()),
                "mean_area": float(areas[in_cluster].mean()) if in_cluster.any() else 0.0,
                "suggestion": by_cluster.get(cluster_id),
                **files,
            }
        )
    entries.sort(key=lambda e: (-e["size"], e["cluster"]))
    atomic_write_json(folder / "clusters.json", entries)
    atomic_write_json(folder / WARNINGS_FILE, list(warnings))
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>roadparse clusters</title></head><body>"
    ]
    page += [
        f"<h1>Clusters of {html.escape(str(workspace.root))}</h1>",
        render_gallery(entries, warnings=warnings),
        "</body></html>",
    ]
    atomic_write_text(folder / "index.html", "\n".join(page))
    return folder / "index.html"


def _merge_snippet(entries: list[dict[str, Any]]) -> str:
    rows: list[tuple[int, str | Split, str]] = []
    for entry in sorted(entries, key=lambda e: e["cluster"]):
        suggestion = entry.get("suggestion") or {}
        comment = f"{entry['size']} masks" + (f", purity {suggestion['purity']:.2f}" if "purity" in suggestion else "")
        value: str | Split = str(suggestion.get("class", DISCARD))
        if "split" in suggestion:  # a split suggested by an earlier version (clusters.json of an existing run)
            value = parse_split(suggestion["split"], f"suggestion for cluster {entry['cluster']}")
            comment += ", split: " + ", ".join(p["class"] for p in suggestion["split_parts"])
        rows.append((int(entry["cluster"]), value, comment))
    return format_merge_map(rows).rstrip("\n")


def render_gallery(entries: list[dict[str, Any]], image_src: Any = None, warnings: Sequence[str] = ()) -> str:
    """Returns the gallery as an HTML fragment (style, warnings, merge-map snippet, one row per cluster).

    ``entries`` are the records of ``clusters.json``; ``image_src(name) -> str`` maps a
    thumbnail file name to an ``src`` (default: the name, relative to the gallery folder);
    ``warnings`` are the suggestion's (``warnings.json``), one list item each.
    """
    image_src = image_src or (lambda name: name)
    parts = [
        _STYLE,
        "<div class='rp-gallery'>",
    ]
    if warnings:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in warnings)
        parts.append(f"<div class='rp-warning'><b>Classes the suggested map does not name</b><ul>{items}</ul></div>")
    parts += [
        "<p>Copy this to <code>WORKDIR/merge_map.yaml</code>, edit the classes (or <code>discard</code> "
        "for mixed clusters) while looking at the rows below, then run <code>roadparse pseudolabel WORKDIR</code>.</p>",
        f"<pre class='rp-yaml'>{html.escape(_merge_snippet(entries))}</pre>",
    ]
    for entry in entries:
        suggestion = entry.get("suggestion")
        name = suggestion["class"] if suggestion else "—"
        css = " class='rp-discard'" if name == "discard" else ""
        detail = (
            f"<br>purity {suggestion['purity']:.2f}"
            if suggestion and "purity" in suggestion
            else ""
        )
        if suggestion and "split_parts" in suggestion:
            detail += "<br>split: " + html.escape(", ".join(p["class"] for p in suggestion["split_parts"]))
        meta = (
            f"<div class='rp-meta'><b>cluster {entry['cluster']}</b><br>{entry['size']} masks<br>"
            f"mean area {entry['mean_area']:.0f} px<br>suggested: <span{css}>{html.escape(str(name))}</span>{detail}</div>"
        )
        typical = "".join(f"<img src='{image_src(f)}' title='typical'>" for f in entry["typical"])
        random = "".join(f"<img src='{image_src(f)}' title='random'>" for f in entry["random"])
        parts.append(
            f"<div class='rp-row'>{meta}<div class='rp-thumbs'>{typical}</div><div class='rp-sep'></div>"
            f"<div class='rp-thumbs'>{random}</div></div>"
        )
    parts.append("</div>")
    return "\n".join(parts)


def render_gallery_fragment(workspace: Workspace, per_kind: int = 6) -> str:
    """Returns the gallery of ``workspace`` as a self-contained HTML fragment (thumbnails inlined).

    Raises:
        ValueError: the gallery has not been written (run `roadparse cluster` first).
    """
    folder = gallery_path(workspace).parent
    index = folder / "clusters.json"
    if not index.exists():
        raise ValueError(f"{index}: no cluster gallery; run `roadparse cluster` first")
    entries = json.loads(index.read_text())
    for entry in entries:
        entry["typical"], entry["random"] = entry["typical"][:per_kind], entry["random"][:per_kind]

    def inline(name: str) -> str:
        return "data:image/jpeg;base64," + base64.b64encode((folder / name).read_bytes()).decode(
            "ascii"
        )

    warnings_file = folder / WARNINGS_FILE
    warnings = json.loads(warnings_file.read_text()) if warnings_file.exists() else []
    return render_gallery(entries, inline, warnings)
