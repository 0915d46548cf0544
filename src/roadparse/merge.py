"""Merge maps (cluster -> class or discard): painting, exact coverage statistics, suggestions, YAML.

The merge map is COMRP's one human step: over-clusters are merged into classes, and
mixed clusters are discarded (paper §3.2.3). This module holds the pure logic:

- :func:`class_table` validates a map against the clusters and the class names
  (split clusters, :mod:`roadparse.merge_split`, are classed per part by :func:`split_class_ids`).
- :func:`paint_masks` paints masks larger-first so small ones on top stay visible.
- :class:`TileCoverage` summarises a tile once (which masks cover which pixels, and the
  ground truth there), so any merge map can then be evaluated exactly without
  repainting, and every mask's ground-truth class histogram is known.
- :func:`suggest_from_histograms` names clusters by majority vote (labels used for
  naming only), :func:`suggest_zero_shot` names clusters by CLIP/SigLIP on typical crops.
- :func:`merge_map_yaml` writes the editable YAML.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from roadparse.io import rle as rle_io
from roadparse.io.labels import IGNORE_INDEX, ClassSet
from roadparse.merge_split import DISCARD as DISCARD  # re-exported: callers name it from here
from roadparse.merge_split import Split, parse_split
from roadparse.yamlstrict import key_line

log = logging.getLogger(__name__)


def class_table(
    merge_map: Mapping[int, str | Split], n_clusters: int, classes: ClassSet
) -> np.ndarray:
    """Returns the (n_clusters,) uint8 class id of every cluster (IGNORE_INDEX for discard).

    A split cluster (:class:`~roadparse.merge_split.Split`) gets IGNORE_INDEX here; its
    parts' names are validated and its masks are classed per part (:func:`split_class_ids`).

    Raises:
        ValueError: a class name is not in ``classes`` (the valid names are listed),
            or a cluster is unknown or unmapped.
    """
    unknown_ids = sorted(k for k in merge_map if not 0 <= k < n_clusters)
    missing = sorted(set(range(n_clusters)) - set(merge_map))
    if unknown_ids:
        raise ValueError(
            f"merge map: unknown cluster ids {unknown_ids} (clusters are 0..{n_clusters - 1})"
        )
    if missing:
        raise ValueError(
            f"merge map: clusters {missing} are not mapped; map each to a class or '{DISCARD}'"
        )
    names = [n for v in merge_map.values() for n in (v.parts if isinstance(v, Split) else [v])]
    bad = sorted({name for name in names if name != DISCARD and name not in classes.names})
    if bad:
        raise ValueError(
            f"merge map: unknown class names {bad}; use one of {', '.join(classes.names)} or '{DISCARD}'"
        )
    table = np.full(n_clusters, IGNORE_INDEX, dtype=np.uint8)
    for cluster_id, name in merge_map.items():
        if isinstance(name, str) and name != DISCARD:
            table[cluster_id] = classes.index(name)
    return table


def split_class_ids(split: Split, parts: np.ndarray, classes: ClassSet) -> np.ndarray:
    """Returns the (n,) uint8 class id of a split cluster's members from their (n,) int parts."""
    table = np.array(
        [IGNORE_INDEX if name == DISCARD else classes.index(name) for name in split.parts],
        dtype=np.uint8,
    )
    ids: npt.NDArray[np.uint8] = table[parts]
    return ids


def parse_merge_map(data: Any, where: str) -> dict[int, str | Split]:
    """Returns cluster id -> class name, ``"discard"`` or a :class:`Split` from a parsed merge map.

    ``data`` is ``{"clusters": {id: class | {split: k, parts: [...]}}}`` (YAML or the review
    page's JSON); ``where`` names its source in errors.

    Raises:
        ValueError: not that shape, a cluster id that is not an integer (a boolean, a fraction, text
            such as ``"0.9"``), an id given twice (``0`` and ``"0"``), a value that is neither a class
            name nor a split; with the line of the key when ``data`` was read by :mod:`roadparse.yamlstrict`.
    """
    clusters = data.get("clusters") if isinstance(data, dict) else None
    if not isinstance(clusters, dict):
        raise ValueError(f"{where}: expected 'clusters:' mapping cluster id -> class name, discard or a split")
    mapping: dict[int, str | Split] = {}
    keys: dict[int, Any] = {}
    for key, value in clusters.items():
        line = key_line(clusters, key)
        at = f"{where}{'' if line is None else f' line {line}'}"
        cluster_id = _cluster_id(key)
        if cluster_id is None:
            raise ValueError(f"{at}: cluster id {key!r} is not an integer")
        if cluster_id in keys:
            raise ValueError(f"{at}: cluster {cluster_id} is given twice (as {keys[cluster_id]!r} and {key!r})")
        keys[cluster_id] = key
        if isinstance(value, dict):
            mapping[cluster_id] = parse_split(value, f"{where}: cluster {cluster_id}")
        elif isinstance(value, str):
            mapping[cluster_id] = value
        else:
            raise ValueError(f"{at}: cluster {cluster_id}: expected a class name, '{DISCARD}' or a split, got {value!r}")
    return mapping


def _cluster_id(key: Any) -> int | None:
    """Returns the cluster id a merge-map key names: an int, or text of digits (the page's JSON); else None."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key.strip()):
        return int(key)
    return None


def painting_order(areas: Sequence[int]) -> np.ndarray:
    """Returns mask indices larger-first (ties by index), the order in which masks are painted."""
    sizes = np.asarray(areas, dtype=np.int64)
    return np.lexsort((np.arange(len(sizes)), -sizes))


def paint_masks(
    height: int, width: int, masks: Sequence[dict[str, Any]], class_ids: Sequence[int]
) -> np.ndarray:
    """Returns the (height, width) uint8 pseudo-label of masks painted with their class ids.

    Masks are painted larger first, so a small mask lying on a large one stays visible.
    Masks with class IGNORE_INDEX (discarded clusters, unembedded masks) are not painted;
    pixels no painted mask covers are IGNORE_INDEX.

    Args:
        masks: dicts with ``rle`` (COCO RLE of the tile) and ``area``.
        class_ids: class id per mask, IGNORE_INDEX to skip it.
    """
    label = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    for index in painting_order([m["area"] for m in masks]):
        if class_ids[index] == IGNORE_INDEX:
            continue
        mask = rle_io.decode(masks[index]["rle"])
        if mask.shape != label.shape:
            raise ValueError(
                f"mask {masks[index].get('id')} is {mask.shape}, tile is {label.shape}"
            )
        label[mask] = class_ids[index]
    return label


@dataclass(frozen=True)
class TileCoverage:
    """A tile reduced to groups of pixels covered by the same set of masks, with their ground truth."""

    stacks: list[np.ndarray]
    """Per group: (d,) int64 mask indices covering it, in painting order (topmost = last)."""
    histograms: np.ndarray
    """(G, C) int64 ground-truth class counts per group (GT ignore pixels left out)."""
    uncovered: np.ndarray
    """(C,) int64 ground-truth counts of pixels no mask covers."""


def tile_coverage(
    masks: Sequence[dict[str, Any]], ground_truth: np.ndarray, n_classes: int
) -> TileCoverage:
    """Returns the coverage summary of one tile's masks over its (H, W) uint8 ground truth.

    Raises:
        ValueError: the ground truth holds ids that are neither classes nor IGNORE_INDEX.
    """
    bad = np.setdiff1d(np.unique(ground_truth), [*range(n_classes), IGNORE_INDEX])
    if bad.size:
        raise ValueError(
            f"ground truth has unknown class ids {bad.tolist()} (classes are 0..{n_classes - 1})"
        )
    order = painting_order([m["area"] for m in masks])
    rng = np.random.default_rng(0)  # fixed: only a hash of the mask sets
    codes = rng.integers(1, 2**63 - 1, size=len(masks), dtype=np.int64).view(np.uint64)
    key = np.zeros(ground_truth.size, dtype=np.uint64)
    decoded = []
    for index in order:
        mask = rle_io.decode(masks[index]["rle"]).ravel()
        if mask.size != key.size:
            raise ValueError(
                f"mask {masks[index].get('id')} does not fit the {ground_truth.shape} ground truth"
            )
        key[mask] ^= codes[index]
        decoded.append(mask)
    gt = ground_truth.ravel()
    labelled = gt != IGNORE_INDEX
    uncovered = np.bincount(gt[labelled & (key == 0)], minlength=n_classes).astype(np.int64)
    groups, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    keep = groups != 0
    flat = inverse[labelled] * n_classes + gt[labelled]
    histograms = np.bincount(flat, minlength=len(groups) * n_classes).reshape(
        len(groups), n_classes
    )
    stacks = [
        np.array(
            [index for index, mask in zip(order, decoded, strict=True) if mask[pixel]],
            dtype=np.int64,
        )
        for pixel in first[keep]
    ]
    return TileCoverage(stacks, histograms[keep].astype(np.int64), uncovered)


def mask_histograms(coverage: TileCoverage, n_masks: int) -> np.ndarray:
    """Returns the (n_masks, C) int64 ground-truth class counts under each whole mask."""
    out = np.zeros((n_masks, coverage.histograms.shape[1]), dtype=np.int64)
    for stack, histogram in zip(coverage.stacks, coverage.histograms, strict=True):
        out[stack] += histogram
    return out


def coverage_confusion(
    coverage: TileCoverage, mask_classes: np.ndarray, n_classes: int
) -> np.ndarray:
    """Returns the (C + 1, C) confusion of the painted pseudo-label (unlabelled row last).

    Exactly what :func:`paint_masks` would give with ``mask_classes`` ((n_masks,) uint8,
    IGNORE_INDEX = not painted), without decoding a mask.
    """
    confusion = np.zeros((n_classes + 1, n_classes), dtype=np.int64)
    confusion[n_classes] += coverage.uncovered
    for stack, histogram in zip(coverage.stacks, coverage.histograms, strict=True):
        painted = mask_classes[stack]
        kept = np.flatnonzero(painted != IGNORE_INDEX)
        confusion[painted[kept[-1]] if kept.size else n_classes] += histogram
    return confusion


def suggest_from_histograms(
    mask_clusters: np.ndarray,
    histograms: np.ndarray,
    n_clusters: int,
    class_names: Sequence[str],
    min_purity: float,
) -> list[dict[str, Any]]:
    """Returns one suggestion per cluster by majority vote of the ground truth under its masks.

    Args:
        mask_clusters: (M,) int cluster id per mask.
        histograms: (M, C) int64 ground-truth class counts under each mask.
        min_purity: below this share of the majority class the cluster is 'discard' (mixed).

    Returns:
        Dicts ``{cluster, class, majority, purity, pixels, masks}``; ``class`` is the
        majority class or 'discard'; clusters without labelled pixels are 'discard'.
    """
    totals = np.zeros((n_clusters, histograms.shape[1]), dtype=np.int64)
    np.add.at(totals, np.asarray(mask_clusters, dtype=np.int64), histograms)
    counts = np.bincount(np.asarray(mask_clusters, dtype=np.int64), minlength=n_clusters)
    suggestions = []
    for cluster_id in range(n_clusters):
        pixels = int(totals[cluster_id].sum())
        best = int(np.argmax(totals[cluster_id]))
        purity = float(totals[cluster_id, best] / pixels) if pixels else 0.0
        majority = class_names[best] if pixels else None
        name = majority if pixels and purity >= min_purity else DISCARD
        suggestions.append(
            {
                "cluster": cluster_id,
                "class": name,
                "majority": majority,
                "purity": round(purity, 4),
                "pixels": pixels,
                "masks": int(counts[cluster_id]),
            }
        )
    return suggestions


def suggest_zero_shot(
    crops_by_cluster: dict[int, list[np.ndarray]],
    class_names: Sequence[str],
    classifier: Any,
    min_purity: float = 0.0,
) -> list[dict[str, Any]]:
    """Returns one suggestion per cluster from zero-shot scores of its typical crops.

    The cluster's class is the label with the highest mean probability over its
    (h, w, 3) uint8 crops; ``purity`` is that mean probability (below ``min_purity``
    the cluster is 'discard'). ``classifier.classify(images, labels) -> (N, L)``.
    """
    prompts = [f"an aerial photo of a {name.replace('_', ' ')}" for name in class_names]
    suggestions = []
    for cluster_id in sorted(crops_by_cluster):
        crops = crops_by_cluster[cluster_id]
        if not crops:
            suggestions.append(
                {
                    "cluster": cluster_id,
                    "class": DISCARD,
                    "majority": None,
                    "purity": 0.0,
                    "masks": 0,
                }
            )
            continue
        mean = np.asarray(classifier.classify(crops, prompts), dtype=np.float64).mean(axis=0)
        best = int(np.argmax(mean))
        name = class_names[best] if mean[best] >= min_purity else DISCARD
        suggestions.append(
            {
                "cluster": cluster_id,
                "class": name,
                "majority": class_names[best],
                "purity": round(float(mean[best]), 4),
                "masks": len(crops),
            }
        )
    return suggestions


def format_merge_map(
    entries: Iterable[tuple[int, str | Split, str]],
    class_names: Sequence[str] | None = None,
    header: Sequence[str] = (),
) -> str:
    """Returns merge-map YAML: ``header`` comment lines, then ``clusters:`` with ``id: value  # comment``.

    The one writer of merge maps (suggestions, the gallery's snippet, ``roadparse review``).
    ``entries`` are (cluster id, class name / ``discard`` / :class:`Split`, comment); with
    ``class_names`` a comment lists the valid names.
    """
    lines = [f"# {line}" for line in header]
    if class_names is not None:
        lines.append(f"# Classes: {', '.join(class_names)}; '{DISCARD}' leaves a cluster's pixels unlabelled (255).")
    lines.append("clusters:")
    for cluster_id, value, comment in entries:
        if isinstance(value, Split):
            value = yaml.safe_dump(value.to_yaml_value(), default_flow_style=True, sort_keys=False).strip()
        lines.append(f"  {cluster_id}: {value}" + (f"  # {comment}" if comment else ""))
    text = "\n".join(lines) + "\n"
    yaml.safe_load(text)  # what we write must read back
    return text


UNSEEN_NOTE = "no labelled pixel: named after its nearest named cluster"
"""How the suggested map's comment begins for a cluster named by :func:`name_unseen_clusters` (the review page finds it)."""


def name_unseen_clusters(
    suggestions: Sequence[dict[str, Any]], mask_clusters: np.ndarray, features: np.ndarray
) -> list[dict[str, Any]]:
    """Returns the suggestions with each cluster that has no labelled pixel named after its nearest named cluster.

    With labels on a few frames, some clusters have no pixel there (a lighting or a material
    those frames lack) and the majority vote can only discard them. Here they take the class
    of the cluster, among those named by the vote (not 'discard'), whose mean
    L2-normalised feature row has the highest cosine with theirs; the entry gains ``nearest``
    (that cluster) and ``similarity``. Without any such cluster nothing changes.

    Args:
        mask_clusters: (N,) cluster id of each feature row.
        features: (N, D) rows in the clustering space (as clustered).
    """
    rows = np.asarray(features, dtype=np.float64)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(mask_clusters, dtype=np.int64)
    donors = [item for item in suggestions if item.get("pixels") and item["class"] != DISCARD]
    out = [dict(item) for item in suggestions]
    if not donors:
        return out

    def centre(cluster_id: int) -> np.ndarray:
        members = rows[labels == cluster_id]
        mean = members.mean(axis=0) if len(members) else np.zeros(rows.shape[1])
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    donor_centres = np.stack([centre(int(item["cluster"])) for item in donors])
    for item in out:
        if item.get("pixels", 0):
            continue
        similarities = donor_centres @ centre(int(item["cluster"]))
        best = int(np.argmax(similarities))
        item.update({"class": donors[best]["class"], "nearest": int(donors[best]["cluster"]),
                     "similarity": round(float(similarities[best]), 4)})
    return out


def unnamed_classes(
    suggestions: Sequence[dict[str, Any]], histograms: np.ndarray, mask_clusters: np.ndarray, class_names: Sequence[str]
) -> list[str]:
    """Returns one line per class that no suggested cluster is named, saying why and what to do.

    A vote can only name a class its labels show, and only where some cluster is mostly that
    class. A class missing from the labels, or one spread thinly over clusters that other classes
    dominate, is then absent from the pseudo-labels without any error: these lines say so.

    Args:
        histograms: (M, C) ground-truth class counts under each mask in the naming tiles.
        mask_clusters: (M,) cluster id of each mask.
    """
    named = {str(item["class"]) for item in suggestions}
    labels = np.asarray(mask_clusters, dtype=np.int64)
    n_clusters = max(int(labels.max()) + 1 if len(labels) else 0, len(suggestions))
    totals = np.zeros((n_clusters, len(class_names)), dtype=np.int64)
    np.add.at(totals, labels, np.asarray(histograms, dtype=np.int64))
    lines = []
    for index, name in enumerate(class_names):
        if name in named:
            continue
        pixels = int(totals[:, index].sum())
        if pixels == 0:
            lines.append(
                f"{name}: the naming labels show no {name}, so no cluster could be voted {name}; "
                f"name its clusters from the gallery, or label a frame that shows {name}"
            )
            continue
        where = int(np.argmax(totals[:, index]))
        share = totals[where, index] / pixels
        purity = totals[where, index] / max(int(totals[where].sum()), 1)
        lines.append(
            f"{name}: {pixels} labelled px, but no cluster is mostly {name} (most of them, {share:.0%}, lie in "
            f"cluster {where}, which is {purity:.0%} {name}); name it from the gallery, or raise cluster.n_clusters"
        )
    return lines


def merge_map_yaml(
    suggestions: Sequence[dict[str, Any]], class_names: Sequence[str], source: str, warnings: Sequence[str] = ()
) -> str:
    """Returns an editable merge-map YAML (``clusters: {id: class}``) with the evidence as comments.

    ``source`` says how the suggestion was made, e.g. "majority vote of dev labels"; each of
    ``warnings`` (e.g. :func:`unnamed_classes`) becomes a "WARNING:" comment line of the header.
    """
    entries: list[tuple[int, str | Split, str]] = []
    for item in suggestions:
        evidence = f"majority {item['majority']}, purity {item['purity']:.2f}, {item['masks']} masks"
        if "pixels" in item:
            evidence += f", {item['pixels']} labelled px"
        value: str | Split = str(item["class"])
        if "nearest" in item:
            evidence = f"{UNSEEN_NOTE} {item['nearest']} (cosine {item['similarity']:.3f}), {item['masks']} masks"
        entries.append((int(item["cluster"]), value, evidence))
    header = [
        f"Suggested merge map ({source}).",
        "Ground-truth labels (if any) were used for NAMING clusters only, never for training.",
        "Copy to WORKDIR/merge_map.yaml, edit, then run `roadparse pseudolabel WORKDIR`.",
        *(f"WARNING: {line}" for line in warnings),
    ]
    return format_merge_map(entries, class_names, header)


def merge_map_from_suggestions(suggestions: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Returns cluster id -> class name from suggestions."""
    return {int(item["cluster"]): str(item["class"]) for item in suggestions}
