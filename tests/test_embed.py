"""Tests for the encoders (layer selection, real EfficientNet-Lite0 weights) and the embed stage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from roadparse.artifacts import (
    TEXTURE_VERSION,
    clustering_features,
    features_path,
    list_tiles,
    read_colour,
    read_features,
    read_index,
    read_shape,
    read_surround,
    read_texture,
    shape_path,
    statistics_record_path,
    surround_path,
    texture_path,
)
from roadparse.config import load_settings
from roadparse.crops import BACKGROUND_RGB, MIN_CROP_SIDE, crop_mask, padded_box
from roadparse.io import rle
from roadparse.io.images import read_image, write_image
from roadparse.mask_statistics import TEXTURE_DIMS, Texture, mask_shape, surround_colour
from roadparse.models.efficientnet_lite import LAYER_CHANNELS, load_efficientnet_lite0
from roadparse.models.encoders import IMAGENET_MEAN, IMAGENET_STD, list_encoders, load_encoder
from roadparse.stages import embed
from roadparse.workspace import Workspace

transformers = pytest.importorskip("transformers")


def _crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _normalised(crops: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _tiny_vit(kind: str, path: Path) -> tuple[object, int]:
    common = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64}
    if kind == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(patch_size=14, image_size=28, **common))
        size = 28
    else:
        model = transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(patch_size=16, image_size=32, **common))
        size = 32
    model.eval().save_pretrained(path)
    return model, size


@pytest.mark.parametrize("kind", ["dinov2", "dinov3"])
def test_vit_layers_are_cls_of_hidden_states(tmp_path: Path, kind: str) -> None:
    model, size = _tiny_vit(kind, tmp_path / kind)
    encoder = load_encoder(tmp_path / kind, [1, 3], "cpu")
    assert encoder.available_layers == [1, 2, 3]
    crops = _crops(3, size)
    features = encoder.encode(crops)
    with torch.no_grad():
        out = model(pixel_values=_normalised(crops), output_hidden_states=True)
    for layer in (1, 3):
        assert features[layer].shape == (3, 32) and features[layer].dtype == np.float32
        np.testing.assert_allclose(features[layer], out.hidden_states[layer][:, 0].numpy(), atol=1e-5)


def test_resnet_stages_are_pooled_hidden_states(tmp_path: Path) -> None:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1])
    model = transformers.ResNetModel(config).eval()
    model.save_pretrained(tmp_path / "resnet")
    encoder = load_encoder(str(tmp_path / "resnet"), [1, 2, 5], "cpu")
    assert encoder.available_layers == [1, 2, 3, 4, 5]
    crops = _crops(2, 64)
    features = encoder.encode(crops)
    with torch.no_grad():
        hidden = model(pixel_values=_normalised(crops), output_hidden_states=True).hidden_states
    for layer, dim in ((1, 8), (2, 8), (5, 32)):
        assert features[layer].shape == (2, dim)
        np.testing.assert_allclose(features[layer], hidden[layer - 1].mean(dim=(2, 3)).numpy(), atol=1e-5)


def test_unknown_layer_and_family_name_the_valid_choices(tmp_path: Path) -> None:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1])
    transformers.ResNetModel(config).save_pretrained(tmp_path / "resnet")
    with pytest.raises(ValueError, match=r"valid layers: 1\.\.3"):
        load_encoder(tmp_path / "resnet", [4], "cpu")
    with pytest.raises(ValueError, match=r"valid layers: 1\.\.8"):
        load_encoder("efficientnet-lite0", [12], "cpu")
    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="supported families"):
        load_encoder(tmp_path / "bert", [1], "cpu")
    with pytest.raises(ValueError, match="does not exist"):
        load_encoder(tmp_path / "missing", [1], "cpu")
    assert "efficientnet-lite0" in list_encoders()


def _skimage_photo(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return cv2.resize(getattr(data, name)(), (224, 224), interpolation=cv2.INTER_AREA)


def test_efficientnet_lite0_real_weights_recognise_photos() -> None:
    model = load_efficientnet_lite0()
    photos = np.stack([_skimage_photo("chelsea"), _skimage_photo("coffee")])
    x = (torch.from_numpy(photos).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        probs = model(x).softmax(dim=1)
    top = probs.argmax(dim=1).tolist()
    assert top[0] in range(281, 286)  # chelsea: a cat (tabby / tiger / Persian / Siamese / Egyptian)
    assert top[1] in (967, 968)  # coffee: espresso / cup
    assert probs.max(dim=1).values.min() > 0.5  # peaked, not random weights (1/1000)


def test_efficientnet_lite0_matches_timm_architecture() -> None:
    timm = pytest.importorskip("timm")
    ours = load_efficientnet_lite0()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    mapped = {}
    for (key, value), (ref_key, ref_value) in zip(ours.state_dict().items(), reference.state_dict().items(), strict=True):
        assert value.shape == ref_value.shape, (key, ref_key)
        mapped[ref_key] = value
    reference.load_state_dict(mapped)
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=1e-4)


def test_efficientnet_encoder_layers_and_batching() -> None:
    encoder = load_encoder("efficientnet-lite0", [1, 7, 8], "cpu")
    crops = _crops(4, 64, seed=1)
    batched = encoder.encode(crops)
    assert {layer: f.shape[1] for layer, f in batched.items()} == {layer: LAYER_CHANNELS[layer] for layer in (1, 7, 8)}
    for i in range(len(crops)):
        single = encoder.encode(crops[i : i + 1])
        for layer in (1, 7, 8):
            np.testing.assert_allclose(single[layer][0], batched[layer][i], rtol=1e-4, atol=1e-4)


def test_crop_geometry() -> None:
    assert padded_box((5, 5, 6, 6), 8, 100, 100) == (1, 1, 9, 9)
    assert padded_box((0, 0, 1, 1), 8, 100, 100) == (0, 0, 8, 8)
    assert padded_box((99, 50, 100, 51), 8, 100, 100) == (92, 46, 100, 54)
    assert padded_box((10, 10, 60, 40), 8, 100, 100) == (10, 10, 60, 40)
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, 10:] = 200
    mask = np.zeros((20, 20), bool)
    mask[:, :5] = True
    crop = crop_mask(image, (0, 0, 20, 20), 4, mask)
    assert crop.shape == (4, 4, 3) and crop.dtype == np.uint8
    assert (crop[:, 0] == 0).all() and (crop[:, -1] == BACKGROUND_RGB).all()


# --- the stage, end to end on a hand-built workspace ---------------------------------------------


def _mask(box: tuple[int, int, int, int], size: int = 48) -> dict:
    x0, y0, x1, y1 = box
    pixels = np.zeros((size, size), bool)
    pixels[y0:y1, x0:x1] = True
    return {"rle": rle.encode(pixels), "bbox": list(box), "area": int(pixels.sum())}


def _build_workspace(
    root: Path, masks_per_tile: dict[str, list[tuple[int, int, int, int]]], broken: set[str] = frozenset(), gsd_cm: float | None = None
) -> Workspace:
    workspace = Workspace(root)
    rng = np.random.default_rng(0)
    tiles = []
    for tile_id in masks_per_tile:
        path = root / "roi" / "tiles" / f"{tile_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if tile_id in broken:
            path.write_bytes(b"not a png")
        else:
            write_image(path, rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        tiles.append({"id": tile_id, "path": f"tiles/{tile_id}.png", "offset": [0, 0], "size": [48, 48], "gsd_cm": gsd_cm})
    workspace.begin("roi", {"mode": "none"}).finish()
    roi = workspace.read_manifest("roi")
    roi["items"] = {"frame0": {"frame": "frame0.png", "tiles": tiles}}
    (root / "roi" / "manifest.json").write_text(json.dumps(roi))
    masks_run = workspace.begin("masks", {"generator": "hand"}, inputs={"roi": roi["fingerprint"]})
    for tile_id, boxes in masks_per_tile.items():
        masks = [{"id": f"{tile_id}_m{i}", **_mask(box)} for i, box in enumerate(boxes)]
        (root / "masks" / f"{tile_id}.json").write_text(json.dumps({"tile": tile_id, "height": 48, "width": 48, "masks": masks}))
        masks_run.record_item(tile_id, {"n_masks": len(masks)})
    masks_run.finish()
    return workspace


class _FailingEncoder:
    """Wraps an encoder and raises on call number ``fail_at`` (simulates an interrupted run)."""

    def __init__(self, encoder, fail_at: int):
        self.encoder, self.layers, self.fail_at, self.calls = encoder, encoder.layers, fail_at, 0

    def encode(self, crops: np.ndarray) -> dict[int, np.ndarray]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("interrupted")
        return self.encoder.encode(crops)


def test_stage_end_to_end_with_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = {"t0": [(2, 3, 30, 20), (10, 10, 40, 44)], "t1": [], "t2": [(0, 0, 9, 9)], "t3": [(5, 5, 6, 6), (0, 0, 48, 48), (20, 1, 47, 9)]}
    workspace = _build_workspace(tmp_path / "work", layout, broken={"t2"})
    settings = load_settings(None, ["embed.encoder=efficientnet-lite0", "embed.layers=[7, 8]", "embed.crop_size=32",
                                    "embed.batch_size=2", "embed.device=cpu"])
    encoder = load_encoder("efficientnet-lite0", [7, 8], "cpu")
    monkeypatch.setattr(embed, "GROUP_BATCHES", 1)  # tiles journalled in groups of >= 2 crops: t0 | t1 t2 t3
    with pytest.raises(KeyboardInterrupt):
        embed.run(workspace, settings, encoder=_FailingEncoder(encoder, fail_at=2))
    manifest = embed.run(workspace, settings, encoder=encoder)
    summary = manifest["summary"]
    assert summary["crops_encoded_now"] == 3  # t0 (and empty t1) were done before the interruption
    assert summary["masks"] == 5 and summary["tiles"] == 3 and summary["dims"] == {"7": 320, "8": 1280}
    assert list(manifest["failed"]) == ["t2"] and "t2.png" in manifest["failed"]["t2"]
    index = read_index(workspace).to_pydict()
    assert index["tile_id"] == ["t0", "t0", "t3", "t3", "t3"]
    assert index["mask_id"] == ["t0_m0", "t0_m1", "t3_m0", "t3_m1", "t3_m2"]
    assert (index["x0"][2], index["x1"][2], index["area"][2]) == (5, 6, 1)
    features = read_features(workspace, 8)
    assert features.shape == (5, 1280) and features.dtype == np.float32
    # every row equals its crop encoded on its own: batching across tiles kept the row order
    tile3 = cv2.cvtColor(cv2.imread(str(tmp_path / "work/roi/tiles/t3.png")), cv2.COLOR_BGR2RGB)
    crop = crop_mask(tile3, padded_box((20, 1, 47, 9), MIN_CROP_SIDE, 48, 48), 32)
    np.testing.assert_allclose(features[4], encoder.encode(crop[None])[8][0], rtol=1e-4, atol=1e-4)
    assert not (workspace.root / "embed" / ".parts").exists()
    again = embed.run(workspace, settings, encoder=_FailingEncoder(encoder, fail_at=1))  # complete: nothing encoded
    assert again["fingerprint"] == manifest["fingerprint"]

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished stage must not load its encoder")

    monkeypatch.setattr(embed, "load_encoder", no_loading)
    assert embed.run(workspace, settings)["fingerprint"] == manifest["fingerprint"]


def test_stage_without_masks_is_a_clear_error(tmp_path: Path) -> None:
    workspace = _build_workspace(tmp_path / "work", {"t0": [], "t1": []})
    settings = load_settings(None, ["embed.encoder=efficientnet-lite0", "embed.layers=[8]", "embed.device=cpu"])
    with pytest.raises(ValueError, match="nothing to embed"):
        embed.run(workspace, settings)


def test_cli_embeds_and_reports(tmp_path: Path) -> None:
    from roadparse.cli import main

    workspace = _build_workspace(tmp_path / "work", {"t0": [(2, 3, 30, 20)], "t1": [(0, 0, 48, 48)]})
    result = CliRunner().invoke(main, ["embed", str(workspace.root), "--encoder", "efficientnet-lite0", "--layer", "6",
                                       "--layer", "8", "--device", "cpu", "--set", "embed.crop_size=32"])
    assert result.exit_code == 0, result.output
    assert "embedded 2 masks from 2 tiles" in result.output
    assert read_features(workspace, 6).shape == (2, 192)
    with pytest.raises(ValueError, match="embedded layers: 6, 8"):
        read_features(workspace, 12)
    # a mistyped encoder fails clearly and leaves the finished embedding valid
    bad = CliRunner().invoke(main, ["embed", str(workspace.root), "--encoder", str(tmp_path / "nope"), "--layer", "6"])
    assert bad.exit_code != 0 and "does not exist" in bad.output
    assert workspace.read_manifest("embed") is not None


def test_frame_colour_gains_remove_white_balance_and_exposure() -> None:
    from roadparse.artifacts import Tile
    from roadparse.stages.embed import balanced, channel_medians, frame_gains

    def _tile(frame: str) -> Tile:
        return Tile(id=frame, path=Path("x.png"), frame=frame, offset=(0, 0), size=(64, 64), valid=(64, 64))

    rng = np.random.default_rng(1)
    scene = np.clip(rng.normal(100, 12, (64, 64, 3)), 1, 255)  # grey asphalt
    scene[20:28] = 180  # a white line (not saturated once warmed)
    neutral = np.rint(scene).astype(np.uint8)
    warm = np.clip(np.rint(scene * [1.08, 1.0, 0.9] * 1.15), 0, 255).astype(np.uint8)  # warm and over-exposed
    padded = np.zeros((64, 96, 3), np.uint8)
    padded[:, :64] = warm  # zero padding must not count as dark road
    medians = {"a": [channel_medians(neutral, step=1)], "b": [channel_medians(padded, step=1)]}
    assert medians["b"][0][1] == 64 * 64
    gains = frame_gains(medians)
    grey = np.mean([np.median(neutral.reshape(-1, 3), axis=0).mean(), np.median(warm.reshape(-1, 3), axis=0).mean()])
    for frame, image in (("a", neutral), ("b", warm)):
        out = balanced(image, _tile(frame), gains)
        np.testing.assert_allclose(np.median(out.reshape(-1, 3), axis=0), grey, atol=1.5)  # road to the run's grey
    a = balanced(neutral, _tile("a"), gains).astype(int)
    b = balanced(warm, _tile("b"), gains).astype(int)
    assert np.abs(a[20:28] - b[20:28]).max() <= 3  # the same white line, the same colour after balancing
    assert np.abs(neutral[20:28].astype(int) - warm[20:28].astype(int)).max() > 20  # it was not before
    untouched = balanced(warm, _tile("c"), None)
    assert untouched is warm


def test_stage_records_the_colour_gains_it_applied(tmp_path: Path) -> None:
    workspace = _build_workspace(tmp_path / "work", {"t0": [(2, 3, 30, 20)], "t1": [(0, 0, 40, 40)]})
    base = ["embed.encoder=efficientnet-lite0", "embed.layers=[7]", "embed.crop_size=32", "embed.device=cpu"]
    encoder = load_encoder("efficientnet-lite0", [7], "cpu")
    plain = embed.run(workspace, load_settings(None, base), encoder=encoder)
    assert plain["summary"]["colour_gains"] is None
    before = read_features(workspace, 7)
    balanced = embed.run(workspace, load_settings(None, [*base, "embed.colour_normalise=frame"]), encoder=encoder)
    gains = balanced["summary"]["colour_gains"]
    assert list(gains) == ["frame0.png"] and len(gains["frame0.png"]) == 3  # one frame: its own channel medians to their mean
    assert balanced["fingerprint"] != plain["fingerprint"]  # another setting, another embedding
    assert read_features(workspace, 7).shape == before.shape


def _embedded_at_2cm(tmp_path: Path, boxes: list[tuple[int, int, int, int]], *overrides: str) -> Workspace:
    """Returns a one-tile workspace at 2 cm/px with ``boxes`` as masks, embedded by EfficientNet-Lite0 layer 7."""
    workspace = _build_workspace(tmp_path / "work", {"t0": boxes}, gsd_cm=2.0)
    settings = load_settings(None, ["embed.encoder=efficientnet-lite0", "embed.layers=[7]", "embed.crop_size=32",
                                    "embed.device=cpu", *overrides])
    embed.run(workspace, settings, encoder=load_encoder("efficientnet-lite0", [7], "cpu"))
    return workspace


def test_stage_records_each_mask_shape_at_the_tiles_gsd(tmp_path: Path) -> None:
    boxes = [(2, 3, 30, 20), (0, 0, 48, 4)]
    workspace = _embedded_at_2cm(tmp_path, boxes)
    shapes = read_shape(workspace)
    assert shapes.shape == (2, 3)
    for row, (x0, y0, x1, y1) in zip(shapes, boxes, strict=True):
        mask = np.zeros((48, 48), bool)
        mask[y0:y1, x0:x1] = True
        np.testing.assert_allclose(row, mask_shape(mask, 2.0), rtol=1e-6)
    assert 10 ** shapes[1][0] == pytest.approx(48 * 4 * 4.0)  # cm² at 2 cm/px
    section = load_settings(None, ["cluster.layer=7", "cluster.shape_weight=0.5"]).cluster
    assert clustering_features(workspace, 7, section).shape == (2, 320 + 3)
    shape_path(workspace).unlink()  # an embedding from before shapes were recorded
    with pytest.raises(ValueError, match="no mask shapes"):
        clustering_features(workspace, 7, section)


def test_stage_records_each_mask_surround_at_the_tiles_gsd(tmp_path: Path) -> None:
    boxes = [(2, 3, 30, 20), (0, 0, 48, 4)]
    workspace = _embedded_at_2cm(tmp_path, boxes, "embed.surround_cm=10")
    surrounds = read_surround(workspace)
    assert surrounds.shape == (2, 6)
    image = read_image(list_tiles(workspace)[0].path)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    for row, (x0, y0, x1, y1) in zip(surrounds, boxes, strict=True):
        mask = np.zeros((48, 48), bool)
        mask[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(row, surround_colour(lab, mask, image.any(axis=2), 5.0))  # 10 cm at 2 cm/px
    section = load_settings(None, ["cluster.layer=7", "cluster.contrast_weight=1"]).cluster
    features = clustering_features(workspace, 7, section)
    assert features.shape == (2, 320 + 6)
    np.testing.assert_allclose(features[:, 320:], read_colour(workspace) - surrounds, atol=1e-6)
    surround_path(workspace).unlink()  # an embedding from before surrounds were recorded
    with pytest.raises(ValueError, match="no mask surrounds"):
        clustering_features(workspace, 7, section)


def test_stage_records_each_mask_texture_at_the_tiles_gsd(tmp_path: Path) -> None:
    boxes = [(2, 3, 30, 20), (0, 0, 48, 4)]
    workspace = _embedded_at_2cm(tmp_path, boxes)
    textures = read_texture(workspace)
    assert textures.shape == (2, TEXTURE_DIMS)
    image = read_image(list_tiles(workspace)[0].path)
    texture = Texture(cv2.cvtColor(image, cv2.COLOR_RGB2LAB), image.any(axis=2), 2.0)  # scales in cm at 2 cm/px
    for row, (x0, y0, x1, y1) in zip(textures, boxes, strict=True):
        mask = np.zeros((48, 48), bool)
        mask[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(row, texture.of(mask))
    section = load_settings(None, ["cluster.layer=7", "cluster.texture_weight=1"]).cluster
    assert clustering_features(workspace, 7, section).shape == (2, 320 + TEXTURE_DIMS)
    texture_path(workspace).unlink()  # an embedding from before textures were recorded
    with pytest.raises(ValueError, match="no mask textures"):
        clustering_features(workspace, 7, section)


def test_a_new_surround_width_or_an_old_embedding_recomputes_surrounds_and_textures_without_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes = {"t0": [(2, 3, 30, 20), (0, 0, 48, 4)], "t1": [(10, 10, 40, 40)]}
    base = ["embed.encoder=efficientnet-lite0", "embed.layers=[7]", "embed.crop_size=32", "embed.device=cpu"]
    encoder = load_encoder("efficientnet-lite0", [7], "cpu")
    workspace = _build_workspace(tmp_path / "work", boxes, gsd_cm=2.0)
    first = embed.run(workspace, load_settings(None, [*base, "embed.surround_cm=10"]), encoder=encoder)
    fresh = _build_workspace(tmp_path / "fresh", boxes, gsd_cm=2.0)  # made from scratch at 20 cm
    embed.run(fresh, load_settings(None, [*base, "embed.surround_cm=20"]), encoder=encoder)
    features = features_path(workspace, 7)
    stamp = features.stat().st_mtime_ns

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder must not run for the surrounds alone")

    monkeypatch.setattr(embed, "load_encoder", no_encoder)
    cluster_inputs = []
    real_begin = Workspace.begin
    monkeypatch.setattr(Workspace, "begin", lambda self, stage, settings, inputs=None: (
        cluster_inputs.append(inputs) if stage == "cluster" else None) or real_begin(self, stage, settings, inputs))

    # another ring width: the embedding stays complete, only the surrounds change
    wider = load_settings(None, [*base, "embed.surround_cm=20"])
    again = embed.run(workspace, wider)
    assert again["fingerprint"] == first["fingerprint"] and features.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(read_surround(workspace), read_surround(fresh))
    np.testing.assert_array_equal(read_texture(workspace), read_texture(fresh))
    assert json.loads(statistics_record_path(workspace).read_text()) == {
        "surround_cm": 20.0, "texture": TEXTURE_VERSION, "embedding": first["fingerprint"]}
    assert not embed.refresh_statistics(workspace, wider.embed, again)  # up to date: nothing to do

    # an embedding from before surrounds and textures were recorded: they are added, the features kept
    surround_path(workspace).unlink()
    texture_path(workspace).unlink()
    statistics_record_path(workspace).unlink()
    embed.run(workspace, wider)
    np.testing.assert_array_equal(read_surround(workspace), read_surround(fresh))
    np.testing.assert_array_equal(read_texture(workspace), read_texture(fresh))
    assert features.stat().st_mtime_ns == stamp

    # an older texture version: recomputed, and the clustering asks for it until then
    from roadparse.stages import cluster

    record = json.loads(statistics_record_path(workspace).read_text())
    statistics_record_path(workspace).write_text(json.dumps({**record, "texture": TEXTURE_VERSION - 1}))
    texture = ["cluster.layer=7", "cluster.n_clusters=2", "cluster.method=kmeans", "cluster.texture_weight=1"]
    with pytest.raises(ValueError, match=f"needs the masks' textures \\(version {TEXTURE_VERSION}\\), the embedding has version"):
        cluster.run(workspace, load_settings(None, [*base, "embed.surround_cm=20", *texture]))
    assert embed.refresh_statistics(workspace, wider.embed, again)
    cluster.run(workspace, load_settings(None, [*base, "embed.surround_cm=20", *texture]))
    assert cluster_inputs.pop() == {"embed": first["fingerprint"], "texture": TEXTURE_VERSION}

    # the clustering follows the ring width when it uses the contrast, and only then
    contrast = ["cluster.layer=7", "cluster.n_clusters=2", "cluster.method=kmeans", "cluster.contrast_weight=1"]
    cluster.run(workspace, load_settings(None, [*base, "embed.surround_cm=20", *contrast]))
    cluster.run(workspace, load_settings(None, [*base, "embed.surround_cm=20", *contrast[:3]]))  # no contrast: no ring
    with pytest.raises(ValueError, match="needs the surrounds of a 30 cm ring .* has those of a 20 cm ring; run `roadparse embed`"):
        cluster.run(workspace, load_settings(None, [*base, "embed.surround_cm=30", *contrast]))  # embed not re-run yet
    thirty = load_settings(None, [*base, "embed.surround_cm=30", *contrast])
    embed.run(workspace, thirty)
    cluster.run(workspace, thirty)
    assert [i.get("surround_cm") for i in cluster_inputs] == [20.0, None, 30.0]


def test_the_encoder_runs_efficientnet_with_its_batch_norms_folded() -> None:
    plain = load_efficientnet_lite0()
    encoder = load_encoder("efficientnet-lite0", [7, 8], "cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())  # training keeps them
    crops = _crops(3, 64, seed=2)
    folded = encoder.encode(crops)
    with torch.no_grad():
        maps = plain.feature_maps((torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.0) / 128.0, {7, 8})
    for layer in (7, 8):
        np.testing.assert_allclose(folded[layer], maps[layer].mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-4)
