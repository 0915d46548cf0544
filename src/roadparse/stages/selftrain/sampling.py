"""Class statistics of a training set and rare-class-aware crop sampling (DACS / DAFormer RCS).

Uniform random crops of shuffled tiles rarely show a class that covers 0.2 % of the pixels
(traffic cones), so the network learns to average it away. With ``selftrain.crop_sampling:
rare_class`` a share of the crops is drawn class first: class ``c`` with probability

    p(c) = exp((1 - f_c) / T) / sum_k exp((1 - f_k) / T)

over the classes present (``f_c`` = the class's share of labelled pixels, ``T`` =
``selftrain.rare_class_temperature``), then a tile holding that class, then a crop holding one of
its pixels. Every choice is a function of (seed, stream position), so resumed and DDP runs
draw the same crops as an uninterrupted single-process run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from roadparse.io.labels import IGNORE_INDEX, read_label_png
from roadparse.stages.selftrain.dataset import IterationBatchSampler, sample_seed

MIN_CLASS_PIXELS = 16
"""A tile takes part in drawing class ``c`` when it holds at least this many pixels of it (else any pixel)."""


def tile_class_counts(label_paths: Sequence[Path], n_classes: int) -> np.ndarray:
    """Returns (N, n_classes) int64 pixel counts of every class in each label map (ignore and ids >= n_classes left out)."""
    counts = np.zeros((len(label_paths), n_classes), dtype=np.int64)
    for row, path in enumerate(label_paths):
        label = read_label_png(path)
        valid = label[(label != IGNORE_INDEX) & (label < n_classes)]
        counts[row] = np.bincount(valid.ravel(), minlength=n_classes)[:n_classes]
    return counts


def class_frequencies(counts: np.ndarray) -> np.ndarray:
    """Returns (C,) float64: each class's share of the labelled pixels of (N, C) ``counts`` (zeros when none)."""
    totals = counts.sum(axis=0).astype(np.float64)
    return totals / totals.sum() if totals.sum() else totals


def rare_class_probabilities(frequencies: np.ndarray, temperature: float) -> np.ndarray:
    """Returns (C,) float64 p(c) ~ exp((1 - f_c) / T) over the classes with f_c > 0 (0 for absent classes)."""
    present = frequencies > 0
    if not present.any():
        raise ValueError("no labelled pixels in the training labels: nothing to sample")
    logits = np.where(present, (1.0 - frequencies) / temperature, -np.inf)
    weights = np.exp(logits - logits[present].max())
    return weights / weights.sum()


class RareClassBatchSampler(IterationBatchSampler):
    """Yields batches of (index, seed, centre_class) keys: with probability ``share`` a crop centred on a
    rare-class draw (``centre_class`` >= 0), else the uniform stream's sample (``centre_class`` = -1).

    Args:
        counts: (N, C) class pixel counts per sample (:func:`tile_class_counts`).
        temperature: T of the class distribution.
        share: probability that a crop is drawn class first.
        (the rest as :class:`IterationBatchSampler`)
    """

    def __init__(
        self,
        counts: np.ndarray,
        batch_size: int,
        iterations: int,
        seed: int,
        temperature: float,
        share: float,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(len(counts), batch_size, iterations, seed, start, rank, world_size)
        self.share = share
        self.class_probabilities = rare_class_probabilities(class_frequencies(counts), temperature)
        self._tiles_of = []
        for column in counts.T:
            holders = np.flatnonzero(column >= MIN_CLASS_PIXELS)
            self._tiles_of.append(holders if len(holders) else np.flatnonzero(column > 0))

    def _key_at(self, position: int) -> tuple[int, int, int]:
        rng = np.random.default_rng([self.seed, position, 1])
        if rng.random() < self.share:
            centre_class = int(rng.choice(len(self.class_probabilities), p=self.class_probabilities))
            index = int(rng.choice(self._tiles_of[centre_class]))
            return index, sample_seed(self.seed, position), centre_class
        return self._index_at(position), sample_seed(self.seed, position), -1

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:  # type: ignore[override]
        global_batch = self.batch_size * self.world_size
        for iteration in range(self.start, self.iterations):
            first = iteration * global_batch + self.rank * self.batch_size
            yield [self._key_at(position) for position in range(first, first + self.batch_size)]
