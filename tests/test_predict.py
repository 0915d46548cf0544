"""Sliding-window prediction: equals whole-image prediction, no seams, outputs keep geo-referencing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from roadparse.config import load_settings
from roadparse.io.images import write_image
from roadparse.io.labels import read_label_png
from roadparse.models.segmenters import build_segmenter, save_segmenter
from roadparse.models.sliding_window import predict_image
from roadparse.windows import blend_weights, seam_rates, window_starts

torch.set_num_threads(1)


def pixelwise_model(num_classes: int = 4) -> torch.nn.Module:
    """Returns a translation-equivariant 1x1-conv model."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, num_classes, 1)
    with torch.no_grad():
        model.weight.mul_(10.0)
    return model.eval()


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_window_starts_cover_and_weights_positive() -> None:
    assert window_starts(100, 32, 24) == [0, 24, 48, 68]
    assert window_starts(32, 32, 24) == [0]
    weight = blend_weights(16)
    assert weight.shape == (16, 16) and weight.min() > 0 and np.allclose(weight, weight.T)
    assert weight[7:9, 7:9].min() > 0.9 > weight[0, 0]


@pytest.mark.parametrize(("height", "width"), [(100, 150), (20, 45), (64, 64)])
def test_sliding_window_equals_whole_image(height: int, width: int) -> None:
    model = pixelwise_model()
    image = random_image(height, width)
    labels, probabilities = predict_image(model, image, window=32, overlap=0.25, batch_size=3, device="cpu",
                                          return_probabilities=True)
    with torch.no_grad():
        whole = torch.softmax(model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0), 1)[0]
    assert labels.shape == (height, width) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, whole.argmax(0).numpy())
    np.testing.assert_allclose(probabilities.astype(np.float32), whole.numpy(), atol=2e-3)


def test_blending_removes_seams_of_a_context_model() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, padding=3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 7, padding=3)).eval()
    # smooth image: a context model labels it in large regions, so label changes are rare
    yy, xx = np.mgrid[0:192, 0:192]
    image = np.stack([128 + 100 * np.sin(xx / 23.0), 128 + 100 * np.cos(yy / 19.0), 128 + 60 * np.sin((xx + yy) / 31.0)], -1).astype(np.uint8)
    borders = [32, 64, 96, 128, 160]
    naive = predict_image(model, image, window=32, overlap=0.0, device="cpu")
    blended = predict_image(model, image, window=32, overlap=0.5, device="cpu")
    naive_rates, blended_rates = seam_rates(naive, borders, borders), seam_rates(blended, borders, borders)
    assert naive_rates["ratio"] > 3.0  # zero padding at window borders shows as seams
    assert blended_rates["ratio"] < naive_rates["ratio"] / 2


def _tiny_model_dir(tmp_path: Path) -> Path:
    from transformers import SegformerConfig

    config = SegformerConfig(hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16)
    config_dir = tmp_path / "cfg"
    config.save_pretrained(config_dir)
    model = build_segmenter("segformer", str(config_dir), 7, pretrained=False)
    names = ["road", "white_marking", "yellow_marking", "guardrail", "crack_sealing", "traffic_cone", "other"]
    colors = [[128, 64, 128], [255, 255, 255], [255, 200, 0], [0, 0, 255], [255, 0, 0], [255, 128, 0], [0, 255, 0]]
    return save_segmenter(model, tmp_path / "model", {"class_names": names, "class_colors": colors})


def test_predict_files_outputs_and_geotiff(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from roadparse.cli import main

    model_dir = _tiny_model_dir(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "frame.png", random_image(40, 70, seed=1))
    transform = from_origin(500000.0, 5400000.0, 0.5, 0.5)  # 0.5 m pixels: 0.25 m² each
    with rasterio.open(inputs / "ortho.tif", "w", driver="GTiff", height=50, width=60, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform) as sink:
        sink.write(np.moveaxis(random_image(50, 60, seed=2), -1, 0))
    out = tmp_path / "out"
    result = main.main(["predict", str(model_dir), str(inputs), "--out", str(out), "--set", "predict.window=32",
                        "--set", "predict.device=cpu", "--set", "predict.gsd_cm=2.0"], standalone_mode=False)
    assert result is None
    assert read_label_png(out / "frame_label.png").shape == (40, 70)
    assert (out / "frame_overlay.jpg").is_file() and (out / "ortho_overlay.jpg").is_file()
    assert not (out / "frame_label.tif").exists()
    with rasterio.open(out / "ortho_label.tif") as labels:
        assert labels.crs.to_epsg() == 32633 and labels.transform == transform
        assert labels.read(1).shape == (50, 60)
        np.testing.assert_array_equal(labels.read(1), read_label_png(out / "ortho_label.png"))
    summary = json.loads((out / "summary.json").read_text())
    by_name = {Path(item["input"]).name: item for item in summary["images"]}
    assert by_name["ortho.tif"]["pixel_area_m2"] == pytest.approx(0.25) and by_name["ortho.tif"]["gsd_source"] == "geotiff"
    assert by_name["frame.png"]["pixel_area_m2"] == pytest.approx(0.0004)
    rows = list(csv.DictReader((out / "areas.csv").open()))
    assert len(rows) == 2 * 7
    ortho_pixels = sum(int(r["pixels"]) for r in rows if r["input"].endswith("ortho.tif"))
    ortho_m2 = sum(float(r["area_m2"]) for r in rows if r["input"].endswith("ortho.tif"))
    assert ortho_pixels == 50 * 60 and ortho_m2 == pytest.approx(50 * 60 * 0.25)
    # rerun: both inputs are recognised as done (outputs untouched); other settings redo them
    stamp = (out / "ortho_label.png").stat().st_mtime_ns
    again = ["predict", str(model_dir), str(inputs), "--out", str(out), "--set", "predict.window=32", "--set", "predict.gsd_cm=2.0"]
    main.main(again, standalone_mode=False)
    assert (out / "ortho_label.png").stat().st_mtime_ns == stamp
    main.main([*again[:-1], "predict.gsd_cm=3.0"], standalone_mode=False)
    assert (out / "ortho_label.png").stat().st_mtime_ns != stamp
    assert len(json.loads((out / "summary.json").read_text())["images"]) == 2


def test_predict_rejects_bad_model_path(tmp_path: Path) -> None:
    from roadparse.models import ModelLoadError
    from roadparse.stages.predict import predict_files

    write_image(tmp_path / "a.png", random_image(8, 8))
    with pytest.raises(ModelLoadError, match="not a roadparse model folder"):
        predict_files(tmp_path, [tmp_path / "a.png"], tmp_path / "out", load_settings())
