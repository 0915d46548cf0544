"""Stage 2 (masks): offline generators, AMG geometry helpers, the stage on a hand-built workspace, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tests.sam_tiny import build_official_sam, hf_twin, road_image

from roadparse.cli import main
from roadparse.config import MasksSettings, Settings
from roadparse.io import rle as rle_io
from roadparse.io.images import write_image
from roadparse.models import ModelLoadError
from roadparse.models.mask_generators import list_mask_generators, load_mask_generator
from roadparse.models.offline_masks import OfflineMaskGenerator
from roadparse.models.sam.amg import (
    build_point_grid,
    generate_crop_boxes,
    masks_to_boxes,
    resized_shape,
)
from roadparse.stages import masks as masks_stage
from roadparse.workspace import Workspace

# --- pure helpers against the official ones -------------------------------------------------------


def test_point_grid_and_crop_boxes_match_official():
    amg = pytest.importorskip("segment_anything.utils.amg")
    np.testing.assert_allclose(build_point_grid(16), amg.build_point_grid(16))
    for layers in (0, 1, 2):
        assert generate_crop_boxes((600, 800), layers, 512 / 1500) == amg.generate_crop_boxes((600, 800), layers, 512 / 1500)


def test_masks_to_boxes_matches_official():
    amg = pytest.importorskip("segment_anything.utils.amg")
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.random((6, 30, 40)) > 0.97)
    masks[0] = False
    assert torch.equal(masks_to_boxes(masks), amg.batched_mask_to_box(masks))


def test_resized_shape_rounds_like_official():
    assert resized_shape(120, 160, 1024) == (768, 1024)
    assert resized_shape(800, 800, 1024) == (1024, 1024)
    assert resized_shape(333, 1000, 1024) == (341, 1024)


# --- offline generator -------------------------------------------------------------------------------


def test_offline_generator_records():
    image = road_image(120, 160)
    records = OfflineMaskGenerator(scale=200, min_mask_area=300).generate(image)
    assert len(records) >= 2
    union = np.zeros(image.shape[:2], int)
    for record in records:
        mask = rle_io.decode(record["rle"])
        assert record["area"] == mask.sum() >= 300
        assert record["bbox"] == list(rle_io.bbox_xyxy(mask))
        x, y = record["point"]
        assert mask[int(y), int(x)]
        assert record["predicted_iou"] is None and record["stability_score"] is None
        union += mask
    assert union.max() == 1  # segments are disjoint
    assert union.mean() > 0.5


def test_offline_generator_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        OfflineMaskGenerator().generate(np.zeros((8, 8), np.uint8))


@pytest.mark.slow  # segments 12 m² at 0.25 cm/px (about 30 s); bench/gsd.py measures the same on 8 frames per GSD
def test_offline_masks_per_m2_hold_across_gsds() -> None:
    """The same synthetic ground at 0.25, 1 and 3 cm/px gives masks per m² within 2x of 0.25 cm/px's
    (a Felzenszwalb scale converted by GSD², as before, gave about 3x at 1 and 3 cm/px)."""
    from roadparse.synth.scene import render_frame

    density = {}
    for gsd in (0.25, 1.0, 3.0):
        width, height = round(300 / gsd), round(200 / gsd)  # 3 x 2 m
        generator = load_mask_generator(MasksSettings(generator="felzenszwalb"), gsd_cm=gsd)
        count = sum(len(generator.generate(render_frame(np.random.default_rng([7, seed]), width, height, gsd)[0]))
                    for seed in range(2))
        density[gsd] = count / (2 * width * height * (gsd / 100) ** 2)
    assert all(0.5 <= density[gsd] / density[0.25] <= 2 for gsd in (1.0, 3.0)), density


def test_flat_image_gives_one_mask_or_none():
    black = np.zeros((80, 80, 3), np.uint8)
    assert len(OfflineMaskGenerator(min_mask_area=7000).generate(black)) == 0
    assert masks_stage.is_flat(black) and not masks_stage.is_flat(road_image(40, 40))


def test_factory_names_and_errors(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "facebook/sam-vit-large" in list_mask_generators() and "felzenszwalb" in list_mask_generators()
    with pytest.raises(ValueError, match="unknown mask generator"):
        load_mask_generator(MasksSettings(generator="sam"))
    with pytest.raises(ModelLoadError, match="give its path"):
        load_mask_generator(MasksSettings(generator="facebook/sam-vit-nonexistent", device="cpu"))


# --- the stage ---------------------------------------------------------------------------------------


def _roi_workspace(root: Path, tiles: dict[str, np.ndarray | None]) -> Workspace:
    """Returns a workspace whose finished roi stage lists ``tiles`` (None: an unreadable file)."""
    workspace = Workspace(root)
    records = []
    for tile_id, image in tiles.items():
        path = root / "roi" / "tiles" / f"{tile_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if image is None:
            path.write_bytes(b"not a png")
            size = [64, 64]
        else:
            write_image(path, image)
            size = [image.shape[1], image.shape[0]]
        records.append({"id": tile_id, "path": f"tiles/{tile_id}.png", "offset": [0, 0], "size": size})
    workspace.begin("roi", {"mode": "none"}).finish()
    roi = workspace.read_manifest("roi")
    roi["items"] = {"frame0": {"frame": "frame0.png", "tiles": records}}
    (root / "roi" / "manifest.json").write_text(json.dumps(roi))
    return workspace


def _settings(**masks) -> Settings:
    return Settings(masks=MasksSettings(**{"generator": "felzenszwalb", "min_mask_area": 300, "offline_scale": 200, **masks}))


def test_stage_offline_end_to_end_with_bad_tiles(tmp_path):
    tiles = {"t0": road_image(120, 160, seed=1), "t1": np.zeros((64, 64, 3), np.uint8), "t2": None}
    workspace = _roi_workspace(tmp_path, tiles)
    manifest = masks_stage.run(workspace, _settings())
    summary = manifest["summary"]
    assert set(manifest["failed"]) == {"t2"} and "t2" in manifest["failed"]
    assert summary["tiles"] == 3 and summary["flat_tiles"] == 1 and summary["tiles_without_masks"] == 1
    data = json.loads((tmp_path / "masks" / "t0.json").read_text())
    assert data["tile"] == "t0" and (data["height"], data["width"]) == (120, 160)
    assert [m["id"] for m in data["masks"]] == [f"t0/{k}" for k in range(len(data["masks"]))]
    assert summary["masks"] == len(data["masks"]) > 0
    assert 0.5 < summary["coverage"] <= 1.0
    assert json.loads((tmp_path / "masks" / "t1.json").read_text())["masks"] == []
    # complete: a second run skips; a different setting reruns
    assert masks_stage.run(workspace, _settings())["fingerprint"] == manifest["fingerprint"]
    assert masks_stage.run(workspace, _settings(min_mask_area=5000))["summary"]["masks"] < summary["masks"]


def test_stage_batches_tiles_like_one_at_a_time(tmp_path):
    tiles = {"t0": road_image(120, 160, seed=1), "t3": road_image(90, 100, seed=3), "t1": np.zeros((64, 64, 3), np.uint8), "t2": None}
    one = masks_stage.run(_roi_workspace(tmp_path / "one", tiles), _settings())
    calls = []

    class Counting(OfflineMaskGenerator):
        def generate_batch(self, images):
            calls.append(len(images))
            return super().generate_batch(images)

    batched = masks_stage.run(_roi_workspace(tmp_path / "two", tiles), _settings(image_batch=2), generator=Counting(scale=200, min_mask_area=300))
    # t0 + t3 in one call; the batch t1 (flat: no call) + t2 (unreadable) fails and is retried one by one
    assert calls == [2] and set(batched["failed"]) == set(one["failed"]) == {"t2"}
    assert batched["items"] == one["items"]
    for tile_id in ("t0", "t1", "t3"):
        assert (tmp_path / "two" / "masks" / f"{tile_id}.json").read_text() == (tmp_path / "one" / "masks" / f"{tile_id}.json").read_text()


def test_stage_resumes_after_interruption(tmp_path):
    tiles = {f"t{i}": road_image(60, 80, seed=i) for i in range(3)}
    workspace = _roi_workspace(tmp_path, tiles)
    calls = []

    class Flaky(OfflineMaskGenerator):
        def generate(self, image):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().generate(image)

    with pytest.raises(KeyboardInterrupt):
        masks_stage.run(workspace, _settings(), generator=Flaky(min_mask_area=100))
    assert not (tmp_path / "masks" / "manifest.json").exists()
    calls.clear()
    manifest = masks_stage.run(workspace, _settings(), generator=OfflineMaskGenerator(min_mask_area=100))
    assert len(manifest["items"]) == 3 and not manifest["failed"]


def test_stage_fails_fast_on_missing_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workspace = _roi_workspace(tmp_path, {"t0": road_image(60, 80)})
    with pytest.raises(ModelLoadError, match="local-dir"):
        masks_stage.run(workspace, _settings(generator="facebook/sam-vit-large"))
    assert not (tmp_path / "masks" / "t0.json").exists()


def test_stage_with_tiny_sam_folder(tmp_path):
    folder = tmp_path / "tiny-sam"
    official = build_official_sam(seed=1)
    with torch.no_grad():
        for name, param in official.named_parameters():
            if "output_hypernetworks_mlps" in name and "layers.2" in name:
                param.mul_(100)
    hf_twin(official, folder)
    workspace = _roi_workspace(tmp_path / "work", {"t0": road_image(96, 128)})
    settings = _settings(generator=str(folder), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_area=10, device="cpu")
    manifest = masks_stage.run(workspace, settings)
    masks = json.loads((tmp_path / "work" / "masks" / "t0.json").read_text())["masks"]
    assert manifest["summary"]["masks"] == len(masks) > 0
    for mask in masks:
        assert rle_io.area(mask["rle"]) == mask["area"] >= 10
        assert 0 <= mask["stability_score"] <= 1 and isinstance(mask["predicted_iou"], float)


def test_cli_masks(tmp_path):
    _roi_workspace(tmp_path, {"t0": road_image(60, 80)})
    result = CliRunner().invoke(main, ["masks", str(tmp_path), "--generator", "felzenszwalb", "--min-area", "200"])
    assert result.exit_code == 0, result.output
    assert "masks on 1 tiles" in result.output
    assert json.loads((tmp_path / "masks" / "manifest.json").read_text())["settings"]["generator"] == "felzenszwalb"
    listed = CliRunner().invoke(main, ["masks", str(tmp_path), "--list-generators"])
    assert "felzenszwalb" in listed.output


def test_generators_by_gsd_convert_pixel_sizes_per_gsd() -> None:
    by_gsd = masks_stage.GeneratorsByGsd(MasksSettings(generator="felzenszwalb"))
    fine, coarse = by_gsd.get(0.25), by_gsd.get(1.0)  # the second is a copy of the first with its own pixel sizes
    assert isinstance(fine, OfflineMaskGenerator) and isinstance(coarse, OfflineMaskGenerator)
    assert (fine.min_mask_area, fine.scale, fine.sigma) == (3000, 200.0, 0.5)  # the paper's pixels at 0.25 cm/px
    # the area filter follows the GSD; the Felzenszwalb scale and smoothing stay in pixels (masks per m² within 2x)
    assert (coarse.min_mask_area, coarse.scale, coarse.sigma) == (188, 200.0, 0.5)


def test_sam_encoder_in_bfloat16_gives_float32_embeddings_close_to_float32s(tmp_path: Path) -> None:
    """``masks.encoder_dtype: bfloat16`` runs SAM's image encoder under autocast: float32 embeddings within
    bfloat16 rounding of float32's, masks of the same kind; at its default it leaves run fingerprints as before."""
    from tests.tiny_hub import save_sam

    folder = save_sam(tmp_path / "sam")
    image = road_image(96, 128)
    common = {"generator": str(folder), "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
              "min_mask_area": 10, "device": "cpu"}
    full = load_mask_generator(MasksSettings(**common))
    half = load_mask_generator(MasksSettings(**common, encoder_dtype="bfloat16"))
    assert half.encoder_dtype == torch.bfloat16 and full.encoder_dtype == torch.float32  # type: ignore[attr-defined]
    reference, sizes = full.embed([image])  # type: ignore[attr-defined]
    embedding, half_sizes = half.embed([image])  # type: ignore[attr-defined]
    assert embedding.dtype == torch.float32 and half_sizes == sizes and not torch.equal(embedding, reference)
    cosine = torch.nn.functional.cosine_similarity(embedding.flatten(1), reference.flatten(1))
    assert float(cosine.min()) > 0.99
    assert len(half.generate(image)) > 0

    assert "encoder_dtype" not in MasksSettings().identity()  # the default: fingerprints of finished runs hold
    assert MasksSettings(encoder_dtype="bfloat16").identity()["encoder_dtype"] == "bfloat16"
