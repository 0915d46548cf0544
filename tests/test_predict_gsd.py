"""predict and the ground sampling distance: the model's working GSD, per-input GSD, resampling, window_m."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from roadparse.artifacts import Tile
from roadparse.config import PredictSettings, defaults_yaml, load_settings
from roadparse.io.images import resample_image, write_image
from roadparse.io.labels import read_label_png
from roadparse.models.segmenters import (
    build_segmenter,
    load_segmenter,
    save_segmenter,
    working_gsd_of,
)
from roadparse.models.sliding_window import labels_at_size, predict_image

torch.set_num_threads(1)

NAMES = ["road", "white_marking", "yellow_marking", "guardrail", "crack_sealing", "traffic_cone", "other"]
COLORS = [[128, 64, 128], [255, 255, 255], [255, 200, 0], [0, 0, 255], [255, 0, 0], [255, 128, 0], [0, 255, 0]]


def tiny_model_dir(tmp_path: Path, working_gsd_cm: float | None) -> Path:
    """Returns a saved random-weight SegFormer; ``working_gsd_cm`` None: a folder from before it was recorded."""
    from transformers import SegformerConfig

    config = SegformerConfig(hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                             decoder_hidden_size=16)
    config.save_pretrained(tmp_path / "cfg")
    torch.manual_seed(0)
    model = build_segmenter("segformer", str(tmp_path / "cfg"), 7, pretrained=False)
    meta: dict[str, object] = {"class_names": NAMES, "class_colors": COLORS}
    if working_gsd_cm is not None:
        meta["working_gsd_cm"] = working_gsd_cm
    return save_segmenter(model, tmp_path / f"model_{working_gsd_cm}", meta)


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Returns an (H, W, 3) uint8 image with structure at several scales (random noise alone gives one label)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 90 * np.sin(xx / 5.0), 128 + 90 * np.cos(yy / 7.0), 128 + 60 * np.sin((xx + yy) / 3.0)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def write_geotiff(path: Path, image: np.ndarray, pixel_m: float) -> object:
    """Writes an RGB GeoTIFF in UTM 33N with ``pixel_m`` pixels; returns its transform."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    transform = from_origin(500000.0, 5400000.0, pixel_m, pixel_m)
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[0], width=image.shape[1], count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as sink:
        sink.write(np.moveaxis(image, -1, 0))
    return transform


def predict(model_dir: Path, inputs: list[Path], out: Path, *sets: str) -> dict:
    from roadparse.stages.predict import predict_files

    settings = load_settings(None, ["predict.device=cpu", "predict.window_m=0.16", *sets])
    return predict_files(model_dir, inputs, out, settings)


def test_window_m_converts_at_the_gsd_and_pixels_win() -> None:
    defaults = PredictSettings()
    assert defaults.window is None and defaults.window_m == pytest.approx(1.28)
    assert defaults.window_pixels(0.25) == 512 and defaults.window_pixels(None) == 512  # the paper's 512 px
    assert defaults.window_pixels(0.5) == 256 and defaults.window_pixels(1.0) == 128
    assert PredictSettings(window_m=1.0).window_pixels(0.3) == 320  # 333 px rounded to a multiple of 32
    assert PredictSettings(window_m=0.01).window_pixels(2.0) == 32  # never under 32 px
    assert PredictSettings(window=256).window_pixels(2.0) == 256  # the pixel setting wins
    text = defaults_yaml()
    assert "  window_m: 1.28  #" in text and "  window: null  #" in text and "  resample: auto  #" in text
    demo = load_settings(Path(__file__).parents[1] / "src" / "roadparse" / "data" / "demo.yaml")
    assert demo.predict.window_pixels(0.25) == demo.predict.window_pixels(2.0) == 256  # the demo keeps 256 px


def test_labels_at_size_averages_2x2_blocks() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 8, 12))
    probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float16)
    labels, confidence = labels_at_size(probabilities, (6, 4))
    blocks = probabilities.astype(np.float32).reshape(3, 4, 2, 6, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(labels, blocks.argmax(0))
    np.testing.assert_array_equal(confidence, np.round(blocks.max(0) * 255).astype(np.uint8))
    same, _ = labels_at_size(probabilities, (12, 8))  # same size: the argmax itself
    np.testing.assert_array_equal(same, probabilities.argmax(0))


def test_geotiff_at_twice_the_model_gsd_is_resampled_and_comes_back(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    model_dir = tiny_model_dir(tmp_path, 0.25)
    image = textured(40, 60, seed=1)
    transform = write_geotiff(tmp_path / "ortho.tif", image, 0.005)  # 0.5 cm/px: 2x the model's GSD
    out = tmp_path / "out"
    summary = predict(model_dir, [tmp_path / "ortho.tif"], out)
    assert summary["model_gsd_cm"] == 0.25 and not summary["failed"]
    record = summary["images"][0]
    assert record["gsd_cm"] == pytest.approx(0.5) and record["gsd_source"] == "geotiff"
    assert record["resampled"] and record["scale"] == pytest.approx(2.0)
    assert record["window_px"] == 64  # 0.16 m at the model's 0.25 cm/px
    assert record["pixel_area_m2"] == pytest.approx(0.005**2)
    labels = read_label_png(out / "ortho_label.png")
    assert labels.shape == (40, 60)
    with rasterio.open(out / "ortho_label.tif") as written:
        assert written.crs.to_epsg() == 32633 and written.transform == transform and written.shape == (40, 60)
        np.testing.assert_array_equal(written.read(1), labels)
    # the model saw the frame at 80x120 px; its probabilities came back bilinearly before the argmax
    model, _ = load_segmenter(model_dir)
    _, probabilities = predict_image(model, resample_image(image, (120, 80)), 64, 0.25, 4, "cpu", return_probabilities=True)
    expected, _ = labels_at_size(probabilities, (60, 40))
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) > 1
    # resample: never predicts it at its own resolution; the changed setting redoes the input
    stamp = (out / "ortho_label.png").stat().st_mtime_ns
    again = predict(model_dir, [tmp_path / "ortho.tif"], out, "predict.resample=never")["images"][0]
    assert not again["resampled"] and again["scale"] == 1.0 and again["window_px"] == 32  # 0.16 m at 0.5 cm/px
    assert (out / "ortho_label.png").stat().st_mtime_ns != stamp
    own, _ = predict_image(model, image, 32, 0.25, 4, "cpu", return_confidence=True)
    np.testing.assert_array_equal(read_label_png(out / "ortho_label.png"), own)


def test_unknown_gsd_is_not_resampled_and_says_so(tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path, 0.25)
    write_image(tmp_path / "tile.png", textured(30, 50))
    summary = predict(model_dir, [tmp_path / "tile.png"], tmp_path / "out")
    record = summary["images"][0]
    assert record["gsd_source"] == "default" and not record["resampled"] and record["window_px"] == 64
    assert any("GSD unknown" in note and "predict.gsd_cm" in note for note in record["notes"])
    assert record["pixel_area_m2"] == pytest.approx(0.0025**2)  # areas at the paper's 0.25 cm/px
    # --gsd-cm gives it one: 1 cm/px is 4x the model's GSD, still resampled (at most 4x)
    from roadparse.cli import main

    out = tmp_path / "cli"
    main.main(["predict", str(model_dir), str(tmp_path / "tile.png"), "--out", str(out), "--gsd-cm", "1.0",
               "--set", "predict.device=cpu", "--set", "predict.window_m=0.16"], standalone_mode=False)
    record = json.loads((out / "summary.json").read_text())["images"][0]
    assert record["gsd_source"] == "setting" and record["resampled"] and record["scale"] == pytest.approx(4.0)
    assert read_label_png(out / "tile_label.png").shape == (30, 50)


def test_huge_upsampling_fails_with_the_fix(tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path, 0.25)
    write_image(tmp_path / "coarse.png", textured(20, 20))
    summary = predict(model_dir, [tmp_path / "coarse.png"], tmp_path / "out", "predict.gsd_cm=2.0")
    (reason,) = summary["failed"].values()
    assert "upsampled 8.0x" in reason and "predict.resample=never" in reason
    fine = predict(model_dir, [tmp_path / "coarse.png"], tmp_path / "never", "predict.gsd_cm=2.0", "predict.resample=never")
    assert not fine["failed"] and not fine["images"][0]["resampled"]


def test_model_folder_without_working_gsd_still_loads_and_predicts(tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path, None)
    _, record = load_segmenter(model_dir)
    assert "working_gsd_cm" not in record and working_gsd_of(record) is None
    write_image(tmp_path / "frame.png", textured(24, 40))
    summary = predict(model_dir, [tmp_path / "frame.png"], tmp_path / "out", "predict.gsd_cm=0.5")
    record = summary["images"][0]
    assert summary["model_gsd_cm"] is None and not record["resampled"] and "notes" not in record
    assert record["gsd_cm"] == 0.5 and record["window_px"] == 32  # window_m at the input's GSD


def tile(gsd_cm: float | None) -> Tile:
    return Tile("t", Path("t.png"), "f.jpg", (0, 0), (8, 8), (8, 8), gsd_cm=gsd_cm)


def test_working_gsd_of_the_tiles() -> None:
    from roadparse.stages.selftrain import tiles_working_gsd

    assert tiles_working_gsd([tile(0.25), tile(0.251), tile(0.249)], None) == pytest.approx(0.25)
    assert tiles_working_gsd([tile(0.25), tile(0.5)], None) is None  # frames disagree
    assert tiles_working_gsd([tile(0.25), tile(None)], None) is None  # a run from before GSDs were recorded
    assert tiles_working_gsd([tile(0.25), tile(0.5)], 0.3) == 0.3  # roi.target_gsd_cm
