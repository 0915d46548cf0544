"""`roadparse run`: all stages in order, stopping for the merge map, resuming after it."""

import json
import shutil

import yaml
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.synth import make_tiny_dataset


def test_run_stops_for_merge_map_then_finishes(tmp_path):
    data = tmp_path / "data"
    make_tiny_dataset(data, n_frames=2, width=800, height=400, tile_size=400, gsd_cm=0.5)
    split = json.loads((data / "split.json").read_text())
    workdir = tmp_path / "run"
    config = {
        "run": {"frames": str(data / "frames"), "workdir": str(workdir), "dev_labels": str(data / "labels"),
                "dev_frames": split["dev"]},
        "roi": {"mode": "none", "tile_size": 400},
        "masks": {"generator": "felzenszwalb", "min_mask_area": 200},
        "embed": {"encoder": "efficientnet-lite0", "layers": [7], "batch_size": 16},
        "cluster": {"layer": 7, "n_clusters": 5, "colour_weight": 1.0},
        "selftrain": {"architecture": "segformer", "pretrained": False, "rounds": 1, "iterations": 2,
                  "batch_size": 2, "crop_size": 64, "scale_range": [400, 800]},
        "predict": {"window": 256},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()

    first = runner.invoke(main, ["run", str(path)])
    assert first.exit_code == 3, first.output
    assert "merge map" in first.output and "gallery" in first.output
    suggested = workdir / "cluster" / "merge_map.suggested.yaml"
    assert suggested.exists() and (workdir / "cluster" / "gallery" / "index.html").exists()
    assert not (workdir / "pseudolabel").exists()
    masks_manifest = (workdir / "masks" / "manifest.json").read_text()

    shutil.copyfile(suggested, workdir / "merge_map.yaml")
    second = runner.invoke(main, ["run", str(path)])
    assert second.exit_code == 0, second.output
    assert "clustering (iter 0)" in second.output and "done:" in second.output
    assert (workdir / "masks" / "manifest.json").read_text() == masks_manifest  # not redone
    assert (workdir / "selftrain" / "manifest.json").exists()
    status = runner.invoke(main, ["status", str(workdir)])
    assert status.output.count("done") == 6, status.output
