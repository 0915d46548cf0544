"""The Python API end to end on tiny synthetic frames with the offline backends, and its pieces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import roadparse
from roadparse.api import MergeMapMissing, resolve_model_path
from roadparse.artifacts import continue_command
from roadparse.io.labels import read_label_png
from roadparse.models.segmenters import MODEL_RECORD
from roadparse.synth import make_tiny_dataset
from roadparse.workspace import Workspace


def _config(tmp_path: Path) -> tuple[Path, dict]:
    data = tmp_path / "data"
    make_tiny_dataset(data, n_frames=2, width=800, height=400, tile_size=400, gsd_cm=0.5)
    split = json.loads((data / "split.json").read_text())
    config = {
        "run": {"frames": str(data / "frames"), "workdir": str(tmp_path / "elsewhere"),
                "dev_labels": str(data / "labels"), "dev_frames": split["dev"]},
        "roi": {"mode": "none", "tile_size": 400},
        "masks": {"generator": "felzenszwalb", "min_mask_area": 200},
        "embed": {"encoder": "efficientnet-lite0", "layers": [7], "batch_size": 16},
        "cluster": {"layer": 7, "n_clusters": 8, "colour_weight": 1.0},
        "selftrain": {"architecture": "segformer", "pretrained": False, "rounds": 1, "iterations": 2,
                      "batch_size": 2, "crop_size": 64, "scale_range": [400, 800]},
        "predict": {"window": 256},
    }
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, split


def test_run_review_resume_predict_export(tmp_path: Path) -> None:
    config, split = _config(tmp_path)
    workdir = tmp_path / "run"
    run = roadparse.Run(config, workdir=workdir, overrides={"cluster.n_clusters": 5})
    assert run.settings.cluster.n_clusters == 5 and run.workdir == workdir.resolve()

    roi = run.roi()
    assert roi["frames"] == 2 and roi["tiles"] == 4 and roi["failed"] == 0
    assert run.masks()["masks"] > 0
    assert run.embed()["layers"] == [7]
    clusters = run.cluster()
    assert clusters["n_clusters"] == 5 and sum(clusters["clustering"]["sizes"]) == clusters["masks"]

    step = run.until_review()  # every stage done already: nothing is redone
    assert step.workdir == workdir.resolve() and step.gallery.is_file()
    assert step.command == f"roadparse review {workdir.resolve()}"
    assert step.merge_map == workdir.resolve() / "merge_map.yaml" and not step.merge_map.exists()
    assert step.suggested_merge_map is not None and step.suggested_merge_map.is_file()

    with pytest.raises(MergeMapMissing) as stopped:
        run.resume()
    message = str(stopped.value)
    assert message.index(step.command) < message.index(str(step.gallery))  # review first, by hand second
    # the command that continues the run is the run itself, with its options, exactly
    expected = f"roadparse run {config.resolve()} --workdir {workdir.resolve()} --set cluster.n_clusters=5"
    assert continue_command(Workspace(workdir)) == expected and message.rstrip().endswith(expected)

    shutil.copyfile(step.suggested_merge_map, step.merge_map)
    result = run.resume()
    assert result.workdir == workdir.resolve()
    assert "clustering (iter 0)" in result.metrics and "segformer (iter 1)" in result.metrics
    assert 0 <= result.metrics["clustering (iter 0)"]["miou"] <= 100
    assert set(result.seconds) == {"roi", "masks", "embed", "cluster", "pseudolabel", "selftrain"}
    summary = run.selftrain()  # finished: returns the summary at once
    assert (result.model_dir is None) == (summary["best_round"] == 0)

    # the pseudo-labels may beat a two-iteration model; a round folder names its model either way
    model = roadparse.load_model(result.model_dir or workdir / "selftrain" / "round_1")
    frame = sorted((tmp_path / "data" / "frames").iterdir())[0]
    prediction = model.predict(frame)
    assert prediction.labels.shape == (400, 800) and prediction.labels.dtype == np.uint8
    assert prediction.confidence.dtype == np.float32 and 0 <= prediction.confidence.min() <= prediction.confidence.max() <= 1
    assert prediction.class_names == model.class_names and int(prediction.labels.max()) < len(model.class_names)
    from roadparse.io.images import read_image

    from_array = model.predict(read_image(frame))
    assert from_array.labels.shape == (400, 800)

    predictions = workdir / "predictions"
    model.predict_files([frame], predictions)
    assert np.array_equal(read_label_png(predictions / f"{frame.stem}_label.png"), prediction.labels)
    exported = roadparse.export(predictions, out=tmp_path / "layers", formats=("gpkg", "coco"), gsd_cm=0.5)
    assert exported.frames == 1 and exported.annotations is not None and exported.annotations > 0
    assert (tmp_path / "layers" / "export.gpkg").is_file() and (tmp_path / "layers" / "coco.json").is_file()
    assert all(path.exists() for path in exported.files)
    coco = json.loads((tmp_path / "layers" / "coco.json").read_text())
    assert all("gsd_cm" in image for image in coco["images"])  # the predictions' GSD (#29.6), as the CLI writes
    assert all(annotation["area_m2"] >= coco["info"]["min_area_m2"] > 0 for annotation in coco["annotations"])
    nothing = roadparse.export(predictions, out=tmp_path / "big", formats="coco", min_area_m2=1e6)
    assert nothing.annotations == 0  # the API's minimum area reaches COCO too


def _fake_run(root: Path, model: str | None) -> None:
    (root / "selftrain" / "round_1" / "model").mkdir(parents=True)
    (root / "selftrain" / "round_1" / "model" / MODEL_RECORD).write_text("{}")
    manifest = {"stage": "selftrain", "summary": {"items": 1, "failed": 0, "model": model}}
    (root / "selftrain" / "manifest.json").write_text(json.dumps(manifest))


def test_a_model_path_may_name_the_run_its_rounds_or_the_model(tmp_path: Path) -> None:
    _fake_run(tmp_path, "round_1/model")
    model = tmp_path / "selftrain" / "round_1" / "model"
    for given in (tmp_path, tmp_path / "selftrain", tmp_path / "selftrain" / "round_1", model):
        assert resolve_model_path(given) == model, given
    checkpoint = tmp_path / "last.pt"
    assert resolve_model_path(checkpoint) == checkpoint


def test_a_run_whose_pseudo_labels_won_hands_on_no_model(tmp_path: Path) -> None:
    _fake_run(tmp_path, None)
    with pytest.raises(ValueError, match="hands on no model"):
        resolve_model_path(tmp_path)
    with pytest.raises(ValueError, match="handed on none"):
        roadparse.load_model(None)  # RunResult.model_dir of such a run


def test_settings_objects_and_frame_lists(tmp_path: Path) -> None:
    config, _ = _config(tmp_path)
    from roadparse.config import load_settings

    frames = sorted((tmp_path / "data" / "frames").iterdir())
    run = roadparse.Run(load_settings(config), frames=frames[:1], overrides={"roi.tile_size": 200})
    assert run.settings.roi.tile_size == 200 and run.settings.cluster.n_clusters == 8
    assert run.roi()["frames"] == 1
    # no config file and a list of files: no `roadparse run` command can continue this run
    root = run.workdir.resolve()
    assert continue_command(Workspace(root)) == f"roadparse pseudolabel {root} && roadparse selftrain {root}"
    with pytest.raises(ValueError, match="unknown key"):
        roadparse.Run(config, overrides={"cluster.no_such_setting": 1})


def test_import_roadparse_stays_light() -> None:
    code = "import sys, roadparse; assert 'torch' not in sys.modules and 'roadparse.api' not in sys.modules; roadparse.Run"
    subprocess.run([sys.executable, "-c", code], check=True)
