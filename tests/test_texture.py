"""A mask's texture at physical scales (embed, ``Texture``) and its block in clustering (``cluster.texture_weight``)."""

import cv2
import numpy as np
import pytest

from roadparse.clustering import append_statistics, cluster
from roadparse.mask_statistics import TEXTURE_DIMS, Texture


def _surface(kind: str, gsd_cm: float, size_m: float = 2.0, seed: int = 0) -> np.ndarray:
    """Returns an RGB image of ``size_m`` square of a surface at ``gsd_cm``, drawn in metres (so the
    same ground at any GSD): asphalt grain (2 cm blobs), pavers (20 × 10 cm in running bond, 1 cm dark
    joints) or smooth paint."""
    side = int(round(size_m * 100 / gsd_cm))
    centres = (np.arange(side) + 0.5) * gsd_cm  # pixel centres in cm
    x, y = np.meshgrid(centres, centres)
    if kind == "asphalt":
        rng = np.random.default_rng(seed)
        fine = rng.normal(0, 1, (int(size_m * 50) + 1,) * 2).astype(np.float32)  # one value per 2 cm cell
        grain = fine[(y // 2).astype(int), (x // 2).astype(int)]
        lightness = 95 + 14 * grain
    elif kind == "pavers":
        row = (y // 10).astype(int)
        joint = ((x + 10 * (row % 2)) % 20 < 1) | (y % 10 < 1)
        lightness = np.where(joint, 60.0, 105.0)
    else:
        lightness = np.full(x.shape, 200.0)
    grey = np.clip(lightness, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _texture(image: np.ndarray, gsd_cm: float, valid: np.ndarray | None = None) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    valid = np.ones(image.shape[:2], bool) if valid is None else valid
    mask = np.zeros(image.shape[:2], bool)
    inset = image.shape[0] // 4
    mask[inset:-inset, inset:-inset] = True  # away from the image's edges
    return Texture(lab, valid, gsd_cm).of(mask)


def test_a_surface_has_one_texture_at_any_gsd_and_exposure() -> None:
    for kind in ("asphalt", "pavers"):
        at_half, at_one = _texture(_surface(kind, 0.5), 0.5), _texture(_surface(kind, 1.0), 1.0)
        assert at_half.shape == (TEXTURE_DIMS,) and at_half.dtype == np.float32
        # the bands coarser than 2 px (1-2, 2-4, 4-8 cm at 1 cm/px) and the coherence agree across GSDs
        np.testing.assert_allclose(at_half[1:], at_one[1:], atol=0.35)
        darker = (_surface(kind, 0.5).astype(np.float32) * 0.7).astype(np.uint8)
        np.testing.assert_allclose(_texture(darker, 0.5)[:4], at_half[:4], atol=0.3)  # energies relative to lightness


def test_textures_tell_surfaces_of_one_colour_apart() -> None:
    asphalt, pavers, paint = (_texture(_surface(kind, 0.5), 0.5) for kind in ("asphalt", "pavers", "paint"))
    other_asphalt = _texture(_surface("asphalt", 0.5, seed=1), 0.5)
    same = np.abs(asphalt - other_asphalt).max()  # another patch of the same surface
    assert same < 0.2 and np.abs(asphalt - pavers).max() > max(3 * same, 0.5)
    assert paint[:4].max() < asphalt[:4].min() - 3  # flat paint: no band energy
    assert pavers[4] > asphalt[4]  # joints give gradients a direction, grain does not


def test_padding_beyond_the_frame_is_not_texture() -> None:
    image = _surface("asphalt", 0.5)
    padded = image.copy()
    edge = image.shape[1] // 4 - 2  # two pixels left of the mask
    padded[:, :edge] = 0
    valid = padded.any(axis=2)
    blind = _texture(padded, 0.5, np.ones_like(valid))  # padding taken for ground: a hard edge next to the mask
    seen = _texture(padded, 0.5, valid)
    truth = _texture(image, 0.5)
    assert np.abs(seen - truth).max() < np.abs(blind - truth).max() / 4


def test_a_row_does_not_depend_on_the_arrays_memory() -> None:
    image = _surface("pavers", 0.5)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    shifted = np.empty((lab.size + 1,), np.uint8)[1:].reshape(lab.shape)
    shifted[:] = lab
    mask = np.zeros(lab.shape[:2], bool)
    mask[5:300, 17:211] = True
    valid = np.ones(mask.shape, bool)
    assert Texture(lab, valid, 0.5).of(mask).tobytes() == Texture(shifted, valid, 0.5).of(mask).tobytes()
    assert np.all(Texture(lab, valid, 0.5).of(np.zeros_like(mask)) == 0)


def test_the_texture_block_is_standardised_and_weighted() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 16)).astype(np.float32)
    texture = rng.normal(5.0, 30.0, size=(40, TEXTURE_DIMS)).astype(np.float32)
    out = append_statistics(features, None, 0.0, texture=texture, texture_weight=2.0)
    block = out[:, 16:]
    np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(block.std(axis=0), 2.0 / np.sqrt(TEXTURE_DIMS), rtol=1e-4)
    assert append_statistics(features, None, 0.0, texture=texture, texture_weight=0.0) is features
    with pytest.raises(ValueError, match="3 texture rows for 40 feature rows"):
        append_statistics(features, None, 0.0, texture=texture[:3], texture_weight=1.0)


def test_texture_separates_masks_the_encoder_embeds_alike() -> None:
    """Two surfaces whose encoder features are one cloud split along the texture when it is appended."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 8)).astype(np.float32) * 0.05 + 1.0
    kinds = np.repeat([0, 1], 30)
    surfaces = [_texture(_surface("asphalt", 0.5, seed=s), 0.5) for s in range(3)] + [_texture(_surface("pavers", 0.5), 0.5)]
    texture = np.stack([surfaces[rng.integers(3)] if k == 0 else surfaces[3] for k in kinds]) + rng.normal(0, 0.01, (60, TEXTURE_DIMS))
    blind = cluster(features, "kmeans", 2, seed=0).labels
    seeing = cluster(append_statistics(features, None, 0.0, texture=texture.astype(np.float32), texture_weight=0.5), "kmeans", 2, seed=0).labels
    agreement = lambda labels: max(np.mean(labels == kinds), np.mean(labels != kinds))  # noqa: E731
    assert agreement(seeing) == 1.0 and agreement(blind) < 0.8
