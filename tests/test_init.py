"""`roadparse init`: frames read (EXIF full and cropped, GeoTIFF, plain PNG), a profile picked from the local
Hugging Face cache, a short config written; a run started from it reaches the review step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from roadparse.cli import main
from roadparse.config import load_profile, load_settings
from roadparse.initialise import ASSUMED_GSD_CM, COARSE_TILE_PX, init, paper_models
from test_exif_georef import write_drone_jpeg

FULL = (5472, 3648)  # a Phantom 4 Pro's image (FC6310: 13.2 mm sensor, EXIF focal 8.8 mm)
ALTITUDE_3CM = 3.0 * 8.8 * FULL[0] / (100 * 13.2)  # the height at which it takes 3 cm/px


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """Every test starts with an empty Hugging Face cache of its own (init reads the environment when called)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _pngs(folder: Path, count: int = 2, size: tuple[int, int] = (80, 60)) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full((size[1], size[0], 3), 90 + index, np.uint8)).save(folder / f"f{index}.png")
    return folder


def _geotiff(path: Path, pixel_m: float, size: tuple[int, int] = (64, 48)) -> Path:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(path, "w", driver="GTiff", width=size[0], height=size[1], count=3, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.Affine(pixel_m, 0, 500000, 0, -pixel_m, 4100000)) as out:
        out.write(np.full((3, size[1], size[0]), 100, dtype=np.uint8))
    return path


def _written(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_drone_jpegs_full_and_cropped_share_the_capture_gsd(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    write_drone_jpeg(frames / "full.jpg", altitude=ALTITUDE_3CM, size=FULL, capture=FULL)
    write_drone_jpeg(frames / "crop.jpg", altitude=ALTITUDE_3CM, size=(1761, 1554), capture=FULL)
    report = init(frames, out=tmp_path / "my.yaml")
    assert [f.gsd_cm for f in report.frames] == pytest.approx([3.0, 3.0])  # the crop's own width gave 9.3
    assert report.gsd_source == "exif" and report.gsd_cm == pytest.approx(3.0)
    assert report.cropped == ["crop.jpg"] and sorted(report.sizes) == sorted([FULL, (1761, 1554)])
    assert report.profile == "offline" and "none of the paper's models" in report.why
    written = _written(tmp_path / "my.yaml")
    assert written == {
        "profile": "offline",
        "run": {"frames": str(frames.resolve()), "workdir": str((tmp_path / "my-run").resolve())},
        "roi": {"tile_size": COARSE_TILE_PX},  # a 2 m tile would be 67 px; one GSD, nothing resampled
    }
    text = str(report)
    assert "1 cropped after capture" in text and "crop.jpg" in text and "roi.tile_size = 512" in text
    assert "67 px at 3 cm/px" in text and "my.yaml" in text


def test_drone_jpeg_without_altitude_is_written_out_as_an_estimate(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    write_drone_jpeg(frames / "a.jpg", altitude=None)
    report = init(frames, out=tmp_path / "my.yaml")
    choice = next(c for c in report.choices if c.key == "roi.gsd_cm")
    assert choice.loud and "ESTIMATED" in choice.why and "relative_altitude_m" in choice.why
    assert choice.value == pytest.approx(100 * 30 * 13.2 / (8.8 * 120), rel=1e-3)
    assert "CHECK: ESTIMATED" in (tmp_path / "my.yaml").read_text()


def test_geotiffs_of_two_gsds_are_resampled_to_the_coarser(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    _geotiff(frames / "fine.tif", 0.005)
    _geotiff(frames / "coarse.tif", 0.02)
    report = init(frames, out=tmp_path / "g.yaml")
    assert report.gsd_source == "geotiff" and [f.gsd_cm for f in report.frames] == pytest.approx([2.0, 0.5])
    assert report.gsd_cm == pytest.approx(2.0)
    assert _written(tmp_path / "g.yaml")["roi"] == {"target_gsd_cm": 2.0}  # a 2 m tile is 100 px: kept
    assert report.cropped == []


def test_plain_pngs_get_the_assumed_gsd_said_loudly(tmp_path):
    report = init(_pngs(tmp_path / "frames"), out=tmp_path / "p.yaml")
    assert report.gsd_source == "none" and report.gsd_cm == ASSUMED_GSD_CM
    assert _written(tmp_path / "p.yaml")["roi"] == {"gsd_cm": ASSUMED_GSD_CM}
    assert "CHECK: ASSUMED: no frame carries a GSD" in (tmp_path / "p.yaml").read_text()
    assert str(report).splitlines()[3].startswith("  CHECK: roi.gsd_cm = 0.25")  # first of the choices
    settings = load_settings(tmp_path / "p.yaml")
    assert settings.roi.mode == "offline" and settings.roi.gsd_cm == ASSUMED_GSD_CM


def test_frames_without_gsd_among_drone_frames_get_their_median(tmp_path):
    frames = _pngs(tmp_path / "frames", count=1)
    write_drone_jpeg(frames / "dji.jpg", altitude=40.0, size=(547, 365), capture=(547, 365))
    report = init(frames, out=None)
    assert report.out is None and not (tmp_path / "roadparse.yaml").exists()
    choice = next(c for c in report.choices if c.key == "roi.gsd_cm")
    assert "1 frame(s) carry no GSD" in choice.why and choice.value == pytest.approx(100 * 40 * 13.2 / (8.8 * 547), rel=1e-3)
    assert report.gsd_source == "mixed (exif 1, none 1)"


def _fake_cache(cache: Path, models: list[tuple[str, str, bool]], skip: str | None = None) -> None:
    """Lays out files as `hf download` does (models--org--name/snapshots/REV + refs/main); no weights inside."""
    for _, model, processor in models:
        if model == skip:
            continue
        repo = cache / ("models--" + model.replace("/", "--"))
        snapshot = repo / "snapshots" / "0123abc"
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abc")
        for name in ("config.json", "model.safetensors", *(["preprocessor_config.json"] if processor else [])):
            (snapshot / name).write_text("{}")


def test_profile_follows_the_local_hugging_face_cache(tmp_path, empty_hub_cache):
    frames = _pngs(tmp_path / "frames")
    models = paper_models(load_profile("paper"))
    assert [m for _, m, _ in models] == ["IDEA-Research/grounding-dino-tiny", "openai/clip-vit-base-patch32",
                                         "facebook/sam-vit-large", "facebook/dinov2-base", "nvidia/mit-b0"]
    _fake_cache(empty_hub_cache, models, skip="facebook/sam-vit-large")
    partial = init(frames, out=None)
    assert partial.profile == "offline" and "facebook/sam-vit-large not in the local" in partial.why
    forced = init(frames, out=None, profile="paper")
    assert forced.profile == "paper" and "BUT facebook/sam-vit-large" in forced.why
    _fake_cache(empty_hub_cache, [("masks.generator", "facebook/sam-vit-large", False)])
    full = init(frames, out=tmp_path / "paper.yaml")
    assert full.profile == "paper" and all(m.cached for m in full.models)
    assert _written(tmp_path / "paper.yaml")["profile"] == "paper"
    assert init(frames, out=None, profile="offline").profile == "offline"


def test_cli_writes_prints_and_keeps_an_existing_file(tmp_path):
    frames = _pngs(tmp_path / "frames")
    out = tmp_path / "my.yaml"
    runner = CliRunner()
    first = runner.invoke(main, ["init", str(frames), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "2 frame(s)" in first.output and "profile: offline" in first.output and f"roadparse run {out}" in first.output
    again = runner.invoke(main, ["init", str(frames), "--out", str(out), "--profile", "paper"])
    assert again.exit_code != 0 and "exists" in again.output and _written(out)["profile"] == "offline"
    forced = runner.invoke(main, ["init", str(frames), "--out", str(out), "--profile", "paper", "--force"])
    assert forced.exit_code == 0 and _written(out)["profile"] == "paper"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no readable frames" in runner.invoke(main, ["init", str(empty), "--out", str(tmp_path / "e.yaml")]).output


def test_a_run_from_the_written_config_reaches_the_review_step(tmp_path):
    """Offline, without editing the YAML: synthetic road frames saved as plain PNGs (no GSD in the files)."""
    from roadparse.synth import make_tiny_dataset

    make_tiny_dataset(tmp_path / "data", n_frames=2, width=800, height=600, tile_size=400, gsd_cm=0.25)
    frames = tmp_path / "frames"
    frames.mkdir()
    for jpeg in sorted((tmp_path / "data" / "frames").glob("*.jpg")):
        Image.open(jpeg).save(frames / f"{jpeg.stem}.png")
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(frames), "--out", str(tmp_path / "my.yaml")]).exit_code == 0
    result = runner.invoke(main, ["run", str(tmp_path / "my.yaml")])
    assert result.exit_code == 3, result.output  # stopped for the merge map, the one human step
    assert "merge map" in result.output
    workdir = tmp_path / "my-run"
    assert (workdir / "cluster" / "gallery" / "index.html").exists()
    roi = json.loads((workdir / "roi" / "manifest.json").read_text())
    assert roi["summary"]["gsd_sources"] == {"setting": 2}
