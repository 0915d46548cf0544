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
