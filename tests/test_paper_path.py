"""The path of a user who has the paper's models: tiny random-weight Grounding DINO, CLIP, SAM, DINOv2 and SegFormer
in a local Hugging Face cache under the paper profile's ids; `roadparse init` picks the paper profile and
`roadparse run` (a fresh process, as a user runs it) loads each by id, stops for the merge map, then ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

from roadparse.initialise import init
from tiny_hub import BUILDERS, fill_hub_cache

RANDOM_WEIGHTS = [
    "roi.box_threshold=0", "roi.text_threshold=0",  # a random detector scores boxes near 0
    # a random SAM gives every point the same large mask: keep them all (NMS off, no quality filter), fewer points
    "masks.points_per_side=4", "masks.box_nms_thresh=1", "masks.pred_iou_thresh=0", "masks.stability_score_thresh=0",
    "masks.min_mask_area=20",
    "cluster.n_clusters=3", "selftrain.iterations=2",  # 96 masks; a CPU test, not 80k iterations
]
"""What tiny random weights need: the settings only, never the code path or the model ids."""


def _roadparse(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    overrides = [arg for item in RANDOM_WEIGHTS for arg in ("--set", item)]
    return subprocess.run([sys.executable, "-c", "from roadparse.cli import main; main()", *args, *overrides],
                          env=env, capture_output=True, text=True, timeout=600)


def test_init_picks_the_paper_profile_and_the_run_reaches_the_end(tmp_path, monkeypatch):
    from roadparse.synth import make_tiny_dataset

    cache = fill_hub_cache(tmp_path / "hub")
    assert sorted(p.name for p in cache.iterdir()) == sorted("models--" + m.replace("/", "--") for m in BUILDERS)
    make_tiny_dataset(tmp_path / "data", n_frames=2, width=400, height=300, tile_size=200, gsd_cm=0.25)
    frames = tmp_path / "frames"
    frames.mkdir()
    for jpeg in sorted((tmp_path / "data" / "frames").glob("*.jpg")):
        Image.open(jpeg).save(frames / f"{jpeg.stem}.png")

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    report = init(frames, out=tmp_path / "my.yaml")
    assert report.profile == "paper" and "5 models are in the local Hugging Face cache" in report.why
    assert yaml.safe_load((tmp_path / "my.yaml").read_text())["profile"] == "paper"

    first = _roadparse(["run", str(tmp_path / "my.yaml")], cache)
    assert first.returncode == 3, first.stdout + first.stderr  # stopped for the merge map
    assert "merge map" in first.stdout
    workdir = tmp_path / "my-run"
    settings = yaml.safe_load((workdir / "settings.yaml").read_text())
    assert settings["roi"]["detector"] == "IDEA-Research/grounding-dino-tiny" and settings["roi"]["mode"] == "detector"
    assert settings["masks"]["generator"] == "facebook/sam-vit-large" and settings["embed"]["encoder"] == "facebook/dinov2-base"
    roi = json.loads((workdir / "roi" / "manifest.json").read_text())
    assert roi["summary"]["mode"] == "detector" and roi["summary"]["tiles"] > 0
    boxes = [box for frame in roi["items"].values() for box in frame["boxes"]]
    assert boxes and all(box["source"] == "detector" and box["filter_label"] == "road" for box in boxes)  # CLIP ran
    assert json.loads((workdir / "masks" / "manifest.json").read_text())["summary"]["masks"] > 0
    assert json.loads((workdir / "embed" / "manifest.json").read_text())["summary"]["dims"] == {"12": 16}

    (workdir / "merge_map.yaml").write_text("clusters: {0: road, 1: other, 2: discard}\n")
    second = _roadparse(["run", str(tmp_path / "my.yaml")], cache)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "done:" in second.stdout
    selftrain = json.loads((workdir / "selftrain" / "manifest.json").read_text())["summary"]
    assert selftrain["rounds_run"] == 2 and selftrain["model"] == "round_2/model"
    record = json.loads((workdir / "selftrain" / "round_2" / "model" / "segmenter.json").read_text())
    assert record["spec"]["architecture"] == "segformer" and record["spec"]["backbone"] == "nvidia/mit-b0"
