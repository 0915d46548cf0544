"""The offline demo end to end at a tiny size: every stage runs on real (synthetic) pixels."""

import json
import re
from pathlib import Path

from click.testing import CliRunner

from roadparse.cli import main

TINY = [
    "--frames", "2", "--width", "1600", "--height", "800", "--iterations", "2",
    "--set", "cluster.n_clusters=6",
    "--set", "selftrain.crop_size=128",
    "--set", "selftrain.scale_range=[128,256]",
    "--set", "selftrain.batch_size=2",
]


def test_tiny_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    report = (out / "report.html").read_text()
    workdir = out / "run"
    for stage in ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain"):
        assert (workdir / stage / "manifest.json").exists(), stage
    assert (workdir / "merge_map.yaml").exists()
    # the terminal table and the report show the same numbers
    rows = [line for line in result.output.splitlines() if line.startswith(("clustering", "deeplabv3plus"))]
    assert rows and rows[0].startswith("clustering (iter 0)")
    assert any(line.startswith("deeplabv3plus (iter 1)") for line in rows)
    for line in rows:
        miou = line.split()[-2]
        assert re.fullmatch(r"\d+\.\d\d", miou) and f"<td>{miou}</td>" in report
    manifest = json.loads((workdir / "selftrain" / "manifest.json").read_text())
    assert manifest["summary"]["items"] >= 1
    # the dev frames predicted whole with the run's model, exported and measured in the report
    handed_on = manifest["summary"]["model"] is not None
    assert ("Measurements of the dev frames" in report) == handed_on
    assert (out / "predictions" / "survey.gpkg").exists() == handed_on
    if handed_on:
        measured = json.loads((out / "predictions" / "measurements.json").read_text())
        assert sorted(measured["frames"]) == sorted(json.loads((out / "data" / "split.json").read_text())["dev"])

    # a second run finds every stage complete and redoes nothing: manifests and item outputs untouched
    manifests = {stage: (workdir / stage / "manifest.json").read_bytes() for stage in STAGES}
    outputs = item_outputs(workdir)
    assert len(outputs) > 20
    again = CliRunner().invoke(main, ["demo", "--out", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert {stage: (workdir / stage / "manifest.json").read_bytes() for stage in STAGES} == manifests
    assert item_outputs(workdir) == outputs


STAGES = ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain")
ITEM_OUTPUTS = (
    "roi/tiles/*.png", "masks/*.json", "embed/features_layer*.npy", "embed/index.parquet", "cluster/assignments.parquet",
    "pseudolabel/labels/*.png", "selftrain/round_*/model/*", "selftrain/round_*/checkpoints/*", "selftrain/round_*/labels/*.png",
    "*/.items/*.json",
)


def item_outputs(workdir: Path) -> dict[str, int]:
    """Returns relative path -> mtime (ns) of every stage's item outputs and journal entries."""
    return {
        str(path.relative_to(workdir)): path.stat().st_mtime_ns
        for pattern in ITEM_OUTPUTS
        for path in workdir.glob(pattern)
        if path.name != "manifest.json"
    }
