"""Tiles with label maps as a training set, and an iteration-indexed batch sampler.

The sampler makes batch ``i`` a pure function of (seed, i, rank): which samples it holds
(epoch-wise shuffled permutations, sharded across DDP ranks like a DistributedSampler)
and the seed of each sample's augmentation. Resuming at iteration ``k`` therefore
reproduces the batches of an uninterrupted run without saving any loader state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from roadparse.io.images import read_image
from roadparse.io.labels import read_label_png
from roadparse.stages.selftrain.augment import augment_pair

_SEED_MIX = 0x9E3779B97F4A7C15


def sample_seed(seed: int, position: int) -> int:
    """Returns a 63-bit seed for the sample at global stream ``position`` of run ``seed``."""
    return ((seed + 1) * _SEED_MIX + position * 0xBF58476D1CE4E5B9) % (2**63 - 1)


class TileLabelDataset(Dataset):
    """(image, label) training pairs: item ``(index, augmentation_seed)`` -> augmented tensors.

    Each item is a (3, S, S) float32 image in [0, 1] and a (S, S) int64 label map where
    IGNORE_INDEX marks pixels that must not enter the loss.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        scale_range: tuple[int, int],
        crop_size: int,
        flip: bool,
        cache_mb: float = 0.0,
    ):
        if not samples:
            raise ValueError("no training samples: every tile needs a label map")
        self.samples = list(samples)
        self.scale_range = scale_range
        self.crop_size = crop_size
        self.flip = flip
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_left = int(cache_mb * 2**20)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        image, label = self._pair(index)
        generator = torch.Generator().manual_seed(seed)
        image_t, label_t = augment_pair(
            torch.from_numpy(np.array(image.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(label).copy()),
            self.scale_range,
            self.crop_size,
            self.flip,
            generator,
        )
        return image_t.float().div_(255.0), label_t

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns the decoded (tile, label) of sample ``index``, kept (read-only) while the cache has room.

        Decoding a tile's PNGs is most of an item's cost; the first tiles decoded stay decoded
        until ``cache_mb`` is used up (each loader process has its own). The pixels are the same
        either way, so the cache changes no result.
        """
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        label = read_label_png(label_path)
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but tile {image_path} "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        size = image.nbytes + label.nbytes
        if size <= self._cache_left:
            image.setflags(write=False)
            label.setflags(write=False)
            self._cache[index] = (image, label)
            self._cache_left -= size
        return image, label


class IterationBatchSampler:
    """Yields, for iterations ``start .. iterations - 1``, one batch of (index, seed) keys each.

    Samples are drawn from a stream of shuffled epochs (a fresh permutation per epoch,
    seeded by ``seed``); with ``world_size`` > 1 each rank takes its own disjoint slice
    of every global batch, as DistributedSampler would.
    """

    def __init__(
        self,
        n_samples: int,
        batch_size: int,
        iterations: int,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.iterations = iterations
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self._perm_epoch = -1
        self._perm: np.ndarray = np.arange(n_samples)

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n_samples)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)
            self._perm_epoch = epoch
        return int(self._perm[offset])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        for iteration in range(self.start, self.iterations):
            first = iteration * global_batch + self.rank * self.batch_size
            yield [
                (self._index_at(position), sample_seed(self.seed, position))
                for position in range(first, first + self.batch_size)
            ]
