"""SIGKILL every stage at a seeded point, rerun it, and check nothing finished was redone.

One tiny offline run (2 synthetic frames → 4 tiles; offline roi, Felzenszwalb masks,
EfficientNet-Lite0 on 64-px crops, spectral k=3, a tiny random SegFormer) is made once per
module; a snapshot of the work directory is kept before each stage. Each test copies the
snapshot, runs the stage in a subprocess (``kill_runner.py``) that SIGKILLs itself just
before or after its N-th atomic rename (N drawn from a seeded generator among the renames
the uninterrupted run made), checks ``roadparse status``, reruns the stage to completion
and compares with the uninterrupted run: bytes for roi / masks / pseudolabel, arrays for
embed / selftrain / predict, the same assignments for cluster; the outputs of items
journalled before the kill keep their mtimes.

The default run kills each stage once; ``-m slow`` adds more kill points per stage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from roadparse.cli import main
from roadparse.synth import make_tiny_dataset
from test_train import tiny_segformer_dir

STAGES = ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain", "predict")
RUNNER = Path(__file__).with_name("kill_runner.py")
MERGE_MAP = "clusters: {0: road, 1: white_marking, 2: other}\n"


@dataclass
class Reference:
    """The uninterrupted run: its work directory, a snapshot before each stage, renames per stage."""

    root: Path
    config: Path
    frames: Path
    work: Path
    predictions: Path
    before: dict[str, Path] = field(default_factory=dict)
    renames: dict[str, int] = field(default_factory=dict)


def stage_args(stage: str, work: Path, reference: Reference, out: Path) -> list[str]:
    """Returns the roadparse arguments that run ``stage`` on ``work`` (predict writes to ``out``)."""
    if stage == "roi":
        return ["roi", str(reference.frames), str(work), "--config", str(reference.config)]
    if stage == "predict":
        model = work / "selftrain" / "round_1" / "model"
        return ["predict", str(model), str(reference.frames), "--out", str(out), "--config", str(reference.config)]
    return [stage, str(work), "--config", str(reference.config)]


def invoke(args: list[str]) -> str:
    """Runs roadparse in this process; returns its output, failing the test on a non-zero exit."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("sigkill")
    make_tiny_dataset(root / "data", n_frames=2, width=400, height=200, tile_size=200, gsd_cm=0.5)
    config = {
        "roi": {"mode": "none", "tile_size": 200},
        "masks": {"generator": "felzenszwalb", "min_mask_area": 400},
        "embed": {"encoder": "efficientnet-lite0", "layers": [4], "batch_size": 8, "crop_size": 64, "device": "cpu"},
        "cluster": {"layer": 4, "n_clusters": 3},
        "selftrain": {"architecture": "segformer", "backbone": str(tiny_segformer_dir(root)), "pretrained": False,
                      "rounds": 1, "iterations": 4, "checkpoint_every": 1, "batch_size": 2, "crop_size": 64,
                      "scale_range": [400, 800], "device": "cpu"},
        "predict": {"window": 128, "device": "cpu"},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    ref = Reference(root, path, root / "data" / "frames", root / "work", root / "predictions")
    count = 0
    real_replace = os.replace

    def counting_replace(*args: object, **kwargs: object) -> None:
        nonlocal count
        count += 1
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    os.replace = counting_replace  # type: ignore[assignment]
    try:
        for stage in STAGES:
            ref.before[stage] = root / "before" / stage
            if stage == "pseudolabel":
                (ref.work / "merge_map.yaml").write_text(MERGE_MAP)
            if ref.work.exists():
                shutil.copytree(ref.work, ref.before[stage])
            else:
                ref.before[stage].mkdir(parents=True)
            count = 0
            invoke(stage_args(stage, ref.work, ref, ref.predictions))
            ref.renames[stage] = count
    finally:
        os.replace = real_replace  # type: ignore[assignment]
    return ref


# ---- what each stage leaves: outputs of finished items, and the comparison with the reference


def journalled(work: Path, stage: str) -> dict[str, dict]:
    """Returns the journal records of ``stage`` by item id (finished items)."""
    journal = work / stage / ".items"
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in sorted(journal.glob("*.json"))}


def finished_outputs(stage: str, work: Path, out: Path) -> list[Path]:
    """Returns the output files of the items that were finished (journalled) in ``work``."""
    if stage == "roi":
        return [work / "roi" / tile["path"] for record in journalled(work, "roi").values() for tile in record["tiles"]]
    if stage == "masks":
        return [work / "masks" / f"{tile}.json" for tile in journalled(work, "masks")]
    if stage == "pseudolabel":
        return [work / "pseudolabel" / "labels" / f"{tile}.png" for tile in journalled(work, "pseudolabel")]
    if stage == "selftrain":
        return [work / "selftrain" / f"{item}" / "model" / "weights.pt" for item in journalled(work, "selftrain")]
    if stage == "cluster":
        return [work / "cluster" / "assignments.parquet"] if (work / "cluster" / "manifest.json").exists() else []
    if stage == "predict":
        stems = [p.stem for p in sorted((out / ".records").glob("*.json"))]
        return [out / f"{stem}{suffix}" for stem in stems for suffix in ("_label.png", "_confidence.png")]
    return []  # embed: finished tiles' parts are merged and removed at the end; checked by crops encoded


def label_array(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def same_files(folder: Path, expected_folder: Path, pattern: str, read: Callable[[Path], object]) -> None:
    def listed(where: Path) -> list[str]:
        return sorted(p.name for p in where.glob(pattern) if p.name != "manifest.json")

    names = listed(expected_folder)
    assert names and listed(folder) == names, folder
    for name in names:
        actual, expected = read(folder / name), read(expected_folder / name)
        if isinstance(expected, np.ndarray):
            np.testing.assert_allclose(actual, expected, atol=1e-5, err_msg=name)  # type: ignore[arg-type]
        else:
            assert actual == expected, name


def assert_same_as_reference(stage: str, work: Path, out: Path, ref: Reference) -> None:
    """Asserts that the stage's outputs in ``work`` (``out`` for predict) equal the uninterrupted run's."""
    expected = ref.work / stage
    if stage == "roi":
        same_files(work / "roi" / "tiles", expected / "tiles", "*.png", Path.read_bytes)
        drop = ("memory",)
        records = {k: {f: v for f, v in r.items() if f not in drop} for k, r in journalled(work, "roi").items()}
        assert records == {k: {f: v for f, v in r.items() if f not in drop} for k, r in journalled(ref.work, "roi").items()}
    elif stage == "masks":
        same_files(work / "masks", expected, "*.json", Path.read_bytes)
    elif stage == "embed":
        same_files(work / "embed", expected, "features_layer*.npy", np.load)
        assert pq.read_table(work / "embed" / "index.parquet").equals(pq.read_table(expected / "index.parquet"))
    elif stage == "cluster":
        assert pq.read_table(work / "cluster" / "assignments.parquet").equals(pq.read_table(expected / "assignments.parquet"))
    elif stage == "pseudolabel":
        same_files(work / "pseudolabel" / "labels", expected / "labels", "*.png", Path.read_bytes)
    elif stage == "selftrain":
        weights = torch.load(work / "selftrain" / "round_1" / "model" / "weights.pt", map_location="cpu")
        reference = torch.load(expected / "round_1" / "model" / "weights.pt", map_location="cpu")
        assert weights.keys() == reference.keys()
        for key in reference:
            torch.testing.assert_close(weights[key], reference[key], rtol=1e-4, atol=1e-5)
        same_files(work / "selftrain" / "round_1" / "labels", expected / "round_1" / "labels", "*.png", label_array)
    elif stage == "predict":
        same_files(out, ref.predictions, "*_label.png", label_array)
        for path in ref.predictions.glob("*_confidence.png"):
            difference = label_array(out / path.name).astype(int) - label_array(path).astype(int)
            assert np.abs(difference).max() <= 1, path.name


def stage_status(work: Path) -> dict[str, str]:
    """Returns ``roadparse status`` as stage -> description."""
    output = invoke(["status", str(work)])
    return {line.split()[0]: line.split(None, 1)[1] for line in output.splitlines() if line.strip()}


def temporary_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


def kill_and_resume(reference: Reference, stage: str, seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    kill_at = int(rng.integers(1, reference.renames[stage] + 1))
    when = str(rng.choice(["before", "after"]))
    work, out = tmp_path / "work", tmp_path / "predictions"
    shutil.copytree(reference.before[stage], work)
    env = {**os.environ, "KILL_AT_REPLACE": str(kill_at), "KILL_WHEN": when, "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
    killed = subprocess.run([sys.executable, str(RUNNER), *stage_args(stage, work, reference, out)],
                            env=env, capture_output=True, text=True, timeout=300)
    point = f"{stage} killed {when} rename {kill_at} of {reference.renames[stage]}"
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])

    if stage != "predict":  # status: earlier stages done, this one never claims more than it has
        status = stage_status(work)
        order = list(STAGES[:-1])
        for earlier in order[: order.index(stage)]:
            assert status[earlier].startswith("done"), (point, status)
        assert status[stage].split()[0] in ("missing", "partial", "done"), (point, status)
        if status[stage].startswith("done"):  # a manifest only ever follows complete outputs
            assert_same_as_reference(stage, work, out, reference)
    finished = {path: path.stat().st_mtime_ns for path in finished_outputs(stage, work, out)}
    embed_done = (work / "embed" / "manifest.json").exists()
    encoded_before = sum(record["masks"] for record in journalled(work, "embed").values()) if stage == "embed" else 0

    output = invoke(stage_args(stage, work, reference, out))
    assert_same_as_reference(stage, work, out, reference)
    assert {path: path.stat().st_mtime_ns for path in finished} == finished, (point, "finished items were redone")
    if stage == "embed" and not embed_done:  # the journalled tiles were not encoded again
        summary = json.loads((work / "embed" / "manifest.json").read_text())["summary"]
        assert summary["crops_encoded_now"] == summary["masks"] - encoded_before, point
    if stage != "predict":
        status = stage_status(work)
        assert status[stage].startswith("done"), (point, status, output)
    assert temporary_files(out if stage == "predict" else work / stage) == [], point


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_then_rerun(reference: Reference, stage: str, tmp_path: Path) -> None:
    kill_and_resume(reference, stage, seed=STAGES.index(stage), tmp_path=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202, 303])
@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_more_points(reference: Reference, stage: str, seed: int, tmp_path: Path) -> None:
    kill_and_resume(reference, stage, seed=seed, tmp_path=tmp_path)


@pytest.mark.parametrize("before", ["cluster", "pseudolabel"])
def test_a_rejected_cluster_setting_leaves_nothing_behind(reference: Reference, tmp_path: Path, before: str) -> None:
    """Issue #13: a failed cluster run left an empty cluster/ ("partial (0 of ?)") and the rejected
    --set in settings.yaml, so the next plain `roadparse cluster` failed again."""
    work = tmp_path / "work"
    shutil.copytree(reference.before[before], work)  # before: clustering not run yet / finished
    settings = (work / "settings.yaml").read_text()
    cluster_files = sorted(p.relative_to(work) for p in (work / "cluster").rglob("*")) if before != "cluster" else []
    result = CliRunner().invoke(main, ["cluster", str(work), "--set", "cluster.n_clusters=1000"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert (work / "settings.yaml").read_text() == settings
    if before == "cluster":
        assert not (work / "cluster").exists()
        assert stage_status(work)["cluster"] == "missing"
    else:  # the finished clustering is untouched
        assert sorted(p.relative_to(work) for p in (work / "cluster").rglob("*")) == cluster_files
        assert stage_status(work)["cluster"].startswith("done")
    invoke(["cluster", str(work)])  # the plain command runs with the settings it had
    assert_same_as_reference("cluster", work, tmp_path, reference)


FAILING_STARTS = {
    # stage: arguments that fail before the stage's work starts (a model that cannot load, a refused input)
    "roi": ["--set", "roi.mode=detector", "--set", "roi.detector=/nonexistent/grounding-dino-tiny"],
    "masks": ["--generator", "facebook/sam-vit-base"],  # not in the (offline) cache
    "embed": ["--encoder", "/nonexistent/dinov2-small"],
    "cluster": ["--set", "cluster.n_clusters=1000"],  # more clusters than masks
    "pseudolabel": ["--merge-map", "BAD_MAP"],  # a class that does not exist
    "selftrain": ["--set", "selftrain.pretrained=true", "--set", "selftrain.backbone=/nonexistent/mit-b0"],
}


@pytest.mark.parametrize("stage", list(FAILING_STARTS))
def test_a_failure_before_work_starts_leaves_a_finished_stage_as_it_was(reference: Reference, tmp_path: Path, stage: str) -> None:
    """Issue #27: `roadparse masks WORK --generator facebook/sam-vit-base` (not in the cache) on finished masks
    deleted the manifest and emptied the journal ("partial (0 of 6)"): every stage now loads its models and checks
    its inputs before it claims its folder, so every file of the work directory keeps its bytes and mtime."""
    work = tmp_path / "work"
    shutil.copytree(reference.work, work)
    bad_map = tmp_path / "bad_map.yaml"
    bad_map.write_text("clusters: {0: road, 1: white_marking, 2: no_such_class}\n")

    def snapshot() -> dict[str, tuple[bytes, int]]:
        files = [p for p in work.rglob("*") if p.is_file() and p.name not in (".lock", "settings.yaml")]
        return {str(p.relative_to(work)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    before, settings = snapshot(), (work / "settings.yaml").read_text()
    extra = [str(bad_map) if arg == "BAD_MAP" else arg for arg in FAILING_STARTS[stage]]
    result = CliRunner().invoke(main, [*stage_args(stage, work, reference, tmp_path / "out"), *extra])
    assert result.exit_code == 1 and "Error: " in result.output, result.output
    assert snapshot() == before, result.output
    assert (work / "settings.yaml").read_text() == settings
    assert all(state.startswith("done") for state in stage_status(work).values())
