"""Split clusters in a merge map: a mixed over-cluster re-clustered into k parts, each mapped on its own.

A merge-map entry is either a class name (or ``discard``) or a split::

    clusters:
      0: road
      5: {split: 2, seed: 0, sizes: [31, 9], parts: [white_marking, yellow_marking]}

The parts are k-means clusters (``seed``) of the cluster's members in the clustering
space (the features the cluster stage clustered, rows L2-normalised), numbered by size,
largest first; ``sizes`` records what the person saw, so a split that no longer
reproduces (other features, other clustering) is an error instead of silently other parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_PARTS = 8
"""Most parts one cluster may be split into (a page row of buttons per part)."""

MAX_SEED = 2**32 - 1
"""Largest k-means seed (NumPy's and scikit-learn's random_state range is 0..2**32 - 1)."""

DISCARD = "discard"
"""The merge-map name that leaves a cluster's (or part's) pixels unlabelled."""


@dataclass(frozen=True)
class Split:
    """A cluster re-clustered into ``len(parts)`` parts, each mapped to a class or discard."""

    parts: tuple[str, ...]
    """Class name (or 'discard') per part; part 0 is the largest."""
    seed: int = 0
    sizes: tuple[int, ...] | None = None
    """Members per part when the split was chosen; checked when it is recomputed."""
    unsplit: str | None = field(default=None, compare=False)
    """The class of the cluster left whole (suggested splits record it); never painted, not compared.

    ``roadparse review`` suggests it instead when the split no longer reproduces.
    """

    @property
    def k(self) -> int:
        """Returns the number of parts."""
        return len(self.parts)

    def to_yaml_value(self) -> dict[str, Any]:
        """Returns the merge-map value of this split (``{split, seed, sizes, parts}``)."""
        value: dict[str, Any] = {"split": self.k, "seed": self.seed}
        if self.sizes is not None:
            value["sizes"] = list(self.sizes)
        value["parts"] = list(self.parts)
        if self.unsplit is not None:
            value["unsplit"] = self.unsplit
        return value


def parse_split(value: Any, where: str) -> Split:
    """Returns the Split of a merge-map value ``{split: k, parts: [...], seed, sizes, unsplit}``.

    Raises:
        ValueError: naming ``where`` (file and cluster) and what is wrong.
    """
    if not isinstance(value, dict) or "parts" not in value:
        raise ValueError(f"{where}: expected a class name, 'discard' or {{split: k, parts: [...]}}")
    parts = value["parts"]
    if not isinstance(parts, list) or not 2 <= len(parts) <= MAX_PARTS:
        raise ValueError(f"{where}: 'parts' must list 2..{MAX_PARTS} class names, got {parts!r}")
    k = value.get("split", len(parts))
    if k != len(parts):
        raise ValueError(f"{where}: split: {k} but {len(parts)} parts are listed")
    sizes = value.get("sizes")
    if sizes is not None and (not isinstance(sizes, list) or len(sizes) != len(parts)):
        raise ValueError(f"{where}: 'sizes' must list one count per part")
    unsplit = value.get("unsplit")
    if unsplit is not None and not isinstance(unsplit, str):
        raise ValueError(f"{where}: 'unsplit' must be a class name, got {unsplit!r}")
    try:
        split = Split(
            parts=tuple(str(p) for p in parts),
            seed=int(value.get("seed", 0)),
            sizes=tuple(int(s) for s in sizes) if sizes is not None else None,
            unsplit=unsplit,
        )
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'seed' and 'sizes' must be integers") from None
    check_seed(split.seed, where)
    return split


def check_seed(seed: int, where: str = "split") -> None:
    """Raises ValueError naming ``where`` unless ``seed`` is a k-means seed (0..2**32 - 1)."""
    if isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{where}: seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")


def split_points(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Returns the (n,) int64 part of each of a cluster's (n, D) points: k-means, parts by size.

    Rows are L2-normalised first (as the cluster stage does). Part 0 is the largest;
    ties go to the part holding the earliest point, so the numbering is deterministic.

    Raises:
        ValueError: k is below 2, above MAX_PARTS, or larger than the number of points; a seed outside 0..2**32 - 1.
    """
    from sklearn.cluster import KMeans

    points = np.asarray(points, dtype=np.float32)
    check_seed(seed)
    if not 2 <= k <= MAX_PARTS:
        raise ValueError(f"a cluster splits into 2..{MAX_PARTS} parts, not {k}")
    if len(points) < k:
        raise ValueError(f"cannot split {len(points)} masks into {k} parts")
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    points = points / np.where(norms == 0, 1.0, norms)
    labels: npt.NDArray[np.int32] = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)
    sizes = np.bincount(labels, minlength=k)
    first = np.array([np.flatnonzero(labels == j).min() if sizes[j] else len(labels) for j in range(k)])
    order = np.lexsort((first, -sizes))  # new part i = old label order[i]
    rename = np.empty(k, dtype=np.int64)
    rename[order] = np.arange(k)
    return rename[labels]


def check_sizes(split: Split, parts: np.ndarray, where: str) -> None:
    """Raises ValueError when recomputed ``parts`` ((n,) int) do not match the recorded sizes."""
    if split.sizes is None:
        return
    sizes = tuple(int(s) for s in np.bincount(parts, minlength=split.k))
    if sizes != split.sizes:
        raise ValueError(
            f"{where}: the split no longer reproduces (parts of {sizes} masks, the map says "
            f"{split.sizes}); the features or clusters changed: split it again in `roadparse review`"
        )


MIN_SPLIT_GAIN = 0.05
"""A suggested split must name this share of the cluster's labelled pixels right beyond the unsplit cluster."""


@dataclass(frozen=True)
class SuggestedSplit:
    """A split chosen by the ground truth under a mixed cluster's members, with the evidence."""

    split: Split
    purities: tuple[float, ...]
    """Share of each part's labelled pixels in its majority class (0 for a part without any)."""
    pixels: tuple[int, ...]
    """Labelled pixels under each part's members."""
    gain: int
    """Labelled pixels named right by the parts that the unsplit cluster named wrong (or discarded)."""


def majority_name(histogram: np.ndarray, class_names: Sequence[str], min_purity: float, fallback: str) -> tuple[str, float]:
    """Returns (name, purity) of a (C,) ground-truth histogram: its majority class, 'discard' below ``min_purity``.

    A histogram without labelled pixels gets ``fallback`` and purity 0.
    """
    pixels = int(histogram.sum())
    if pixels == 0:
        return fallback, 0.0
    best = int(np.argmax(histogram))
    purity = float(histogram[best] / pixels)
    return (class_names[best] if purity >= min_purity else DISCARD), purity


def named_right(totals: np.ndarray, names: Sequence[str], class_names: Sequence[str]) -> int:
    """Returns the labelled pixels of (k, C) ``totals`` whose part's name is their ground-truth class."""
    return sum(int(totals[j, class_names.index(name)]) for j, name in enumerate(names) if name != DISCARD)


def cross_validated_gain(
    parts: np.ndarray, k: int, folds: np.ndarray, class_names: Sequence[str], min_purity: float
) -> int:
    """Returns the labelled pixels a split names right beyond the unsplit cluster, each fold named by the others.

    ``parts`` is (n,) the part of each member, ``folds`` (F, n, C) ground-truth histograms per
    fold (labelled frame). A fold's pixels are scored with names voted by the other folds
    only; a part (or the cluster) the other folds never saw keeps the unsplit name, so it
    neither gains nor loses.
    """
    everything = folds.sum(axis=0)
    gain = 0
    for fold in folds:
        others = everything - fold
        cluster_others = others.sum(axis=0)
        parent, _ = majority_name(cluster_others, class_names, min_purity, DISCARD)
        part_others = np.zeros((k, others.shape[1]), dtype=np.int64)
        np.add.at(part_others, parts, others)
        names = [majority_name(row, class_names, min_purity, parent)[0] for row in part_others]
        part_fold = np.zeros_like(part_others)
        np.add.at(part_fold, parts, fold)
        gain += named_right(part_fold, names, class_names) - named_right(fold.sum(axis=0)[None], [parent], class_names)
    return gain


def suggest_split(
    points: np.ndarray,
    histograms: np.ndarray,
    class_names: Sequence[str],
    min_purity: float,
    max_parts: int,
    *,
    seed: int = 0,
    min_gain: float = MIN_SPLIT_GAIN,
    folds: np.ndarray | None = None,
) -> SuggestedSplit | None:
    """Returns the split of a mixed cluster that names its labelled pixels clearly better, or None.

    The cluster's members ((n, D) ``points`` in the clustering space, (n, C) ``histograms``
    of the ground truth under each) are split with :func:`split_points` into k = 2..
    ``max_parts`` parts. Each part is named by the majority of its labelled pixels
    ('discard' below ``min_purity``; a part without labelled pixels keeps the unsplit
    cluster's name). The score of a naming is the labelled pixels it names right; the gain
    of k parts is its score minus the unsplit cluster's. With margin = ``min_gain`` x the
    cluster's labelled pixels, the smallest k whose gain is at least the margin and comes
    within the margin of the best gain of any k is returned (so a larger k must name a
    margin's worth more pixels right to be chosen); None when no k gains the margin.

    With ``folds`` ((F, n, C): the same histograms per labelled frame, F >= 2) the gain is
    cross-validated: each fold's pixels are scored with the part and cluster names voted by
    the other folds, so a split whose naming only holds on the pixels that named it (parts
    that are one frame's accident) gains nothing. The returned names use every fold.
    """
    histograms = np.asarray(histograms, dtype=np.int64)
    totals = histograms.sum(axis=0)
    labelled = int(totals.sum())
    if labelled == 0:
        return None
    parent, _ = majority_name(totals, class_names, min_purity, DISCARD)
    base = named_right(totals[None], [parent], class_names)
    margin = min_gain * labelled
    tried = []
    for k in range(2, min(max_parts, MAX_PARTS, len(points)) + 1):
        parts = split_points(points, k, seed)
        part_totals = np.zeros((k, len(totals)), dtype=np.int64)
        np.add.at(part_totals, parts, histograms)
        named = [majority_name(row, class_names, min_purity, parent) for row in part_totals]
        if folds is not None and len(folds) >= 2:
            gain = cross_validated_gain(parts, k, np.asarray(folds, dtype=np.int64), class_names, min_purity)
        else:
            gain = named_right(part_totals, [name for name, _ in named], class_names) - base
        tried.append((gain, parts, part_totals, named))
    best = max((gain for gain, *_ in tried), default=0)
    if best < margin:
        return None
    gain, parts, part_totals, named = next(t for t in tried if t[0] >= max(margin, best - margin))
    return SuggestedSplit(
        split=Split(
            parts=tuple(name for name, _ in named),
            seed=seed,
            sizes=tuple(int(s) for s in np.bincount(parts, minlength=len(named))),
            unsplit=parent,
        ),
        purities=tuple(round(purity, 4) for _, purity in named),
        pixels=tuple(int(p) for p in part_totals.sum(axis=1)),
        gain=int(gain),
    )
