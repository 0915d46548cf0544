"""Joint augmentation of an image and its label map (paper §4.5: random resize, crop, flip).

Randomness comes from an explicit ``torch.Generator``, so a sample's augmentation is a
function of (seed, iteration, slot) and a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from roadparse.io.labels import IGNORE_INDEX

REFERENCE_TILE_PX = 800
"""The paper's tile side: ``scale_range`` gives the short side such a tile is resized to, and a tile of another size
is resized by the same factors (a 200-px tile to 128-256 px for 512-1024), so that objects keep in training the size in
pixels they have when the tiles are relabelled and frames predicted."""


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Returns an integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def augment_pair(
    image: torch.Tensor,
    label: torch.Tensor,
    scale_range: tuple[int, int],
    crop_size: int,
    flip: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the (3, S, S) uint8 image and (S, S) int64 label after resize, crop and flip.

    The short side is resized by a random factor of ``scale_range`` / :data:`REFERENCE_TILE_PX` (an 800-px tile to a
    length in ``scale_range``; bilinear for the image, nearest for the label), a random ``crop_size`` square is cut (sides shorter
    than the crop are padded: image with 0, label with IGNORE_INDEX so padding never
    enters the loss), and the pair is flipped horizontally with probability 0.5.

    Args:
        image: (3, H, W) uint8.
        label: (H, W) uint8 or int64 class ids, IGNORE_INDEX = unlabelled.
        scale_range: (low, high) short-side lengths in pixels of an 800-px tile.
        crop_size: side S of the crop.
        flip: allow the horizontal flip.
        generator: source of randomness.
    """
    image = tv_tensors.Image(image)
    mask = tv_tensors.Mask(label[None])
    drawn = _randint(int(scale_range[0]), int(scale_range[1]), generator)
    side = min(image.shape[-2:])
    short = drawn if side == REFERENCE_TILE_PX else max(1, round(drawn * side / REFERENCE_TILE_PX))
    image = TF.resize(image, [short], interpolation=InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(mask, [short], interpolation=InterpolationMode.NEAREST)
    height, width = image.shape[-2:]
    pad_right, pad_bottom = max(0, crop_size - width), max(0, crop_size - height)
    if pad_right or pad_bottom:
        image = TF.pad(image, [0, 0, pad_right, pad_bottom], fill=0)
        mask = TF.pad(mask, [0, 0, pad_right, pad_bottom], fill=IGNORE_INDEX)
    height, width = mask.shape[-2:]
    top, left = _randint(0, height - crop_size, generator), _randint(0, width - crop_size, generator)
    image = TF.crop(image, top, left, crop_size, crop_size)
    mask = TF.crop(mask, top, left, crop_size, crop_size)
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        image = TF.horizontal_flip(image)
        mask = TF.horizontal_flip(mask)
    return image.as_subclass(torch.Tensor), mask[0].as_subclass(torch.Tensor).long()

