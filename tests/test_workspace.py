import json

import pytest

from roadparse.executor import process_batches, process_items
from roadparse.workspace import StageManifest, Workspace, atomic_output, atomic_write_text


class Boom(Exception):
    """An interruption that is not a per-item error (like KeyboardInterrupt or a crash)."""


def _write_outputs(stage_dir, calls, fail_after=None):
    def fn(item):
        if fail_after is not None and len(calls) >= fail_after:
            raise Boom("killed")
        calls.append(item)
        atomic_write_text(stage_dir / f"{item}.txt", f"output of {item}")
        return {"value": item}

    return fn


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_interrupted_stage_resumes_without_redoing_items(tmp_path):
    ws = Workspace(tmp_path / "run")
    items = {f"tile{i}": f"tile{i}" for i in range(6)}
    settings = {"k": 1}

    run = ws.begin("masks", settings)
    first_calls: list[str] = []
    with pytest.raises(Boom):
        process_items(run, items, _write_outputs(run.dir, first_calls, fail_after=3), desc="t", unit="tile")
    assert first_calls == ["tile0", "tile1", "tile2"]
    assert ws.read_manifest("masks") is None  # not complete
    status = {s.stage: s for s in ws.status()}["masks"]
    assert status.state == "partial" and status.done == 3 and status.total == 6
    assert not list(run.dir.glob(".*.tmp"))  # nothing half-written

    run2 = ws.begin("masks", settings)
    assert not run2.complete
    second_calls: list[str] = []
    process_items(run2, items, _write_outputs(run2.dir, second_calls), desc="t", unit="tile")
    manifest = run2.finish({"extra": 1})
    assert second_calls == ["tile3", "tile4", "tile5"]
    assert sorted(manifest["items"]) == sorted(items)
    assert manifest["summary"]["items"] == 6 and manifest["summary"]["extra"] == 1
    assert all((run2.dir / f"{k}.txt").read_text() == f"output of {k}" for k in items)

    run3 = ws.begin("masks", settings)
    assert run3.complete  # same settings and inputs: skipped


def test_changed_settings_make_stage_stale_and_restart(tmp_path):
    ws = Workspace(tmp_path)
    run = ws.begin("roi", {"a": 1})
    process_items(run, {"x": "x"}, lambda item: {"v": 1}, desc="t", unit="f")
    run.finish()
    down = ws.begin("masks", {"b": 1}, inputs={"roi": run.fingerprint})
    down.finish()
    assert [s.state for s in ws.status()][:2] == ["done", "done"]

    rerun = ws.begin("roi", {"a": 2})
    assert not rerun.complete and not rerun.item_done("x")
    process_items(rerun, {"x": "x"}, lambda item: {"v": 2}, desc="t", unit="f")
    rerun.finish()
    states = {s.stage: s.state for s in ws.status()}
    assert states["roi"] == "done" and states["masks"] == "stale" and states["embed"] == "missing"


def test_failed_items_are_recorded_and_run_continues(tmp_path):
    ws = Workspace(tmp_path)
    run = ws.begin("roi", {})

    def fn(item):
        if item == "bad":
            raise ValueError("bad.jpg: corrupt or truncated image")
        return {"ok": True}

    done, failed = process_items(run, {"a": "a", "bad": "bad", "c": "c"}, fn, desc="t", unit="f")
    manifest = run.finish()
    assert (done, failed) == (2, 1)
    assert manifest["failed"] == {"bad": "bad.jpg: corrupt or truncated image"}
    assert manifest["summary"]["failed"] == 1
    on_disk = json.loads((tmp_path / "roi" / "manifest.json").read_text())
    assert on_disk["fingerprint"] == run.fingerprint


def test_batches_isolate_a_bad_item(tmp_path):
    run = Workspace(tmp_path).begin("masks", {})
    seen = []

    def fn(batch):
        seen.append(list(batch))
        if "bad" in batch:
            raise ValueError("bad.png: cannot identify image file")
        return [{"item": item} for item in batch]

    items = {key: key for key in ["a", "b", "bad", "c", "d"]}
    done, failed = process_batches(run, items, fn, batch_size=2, desc="t", unit="f")
    manifest = run.finish()
    assert (done, failed) == (4, 1)
    assert seen == [["a", "b"], ["bad", "c"], ["d"], ["bad"], ["c"]]  # the failed batch is retried item by item, last
    assert manifest["failed"] == {"bad": "bad.png: cannot identify image file"}
    assert set(manifest["items"]) == {"a", "b", "c", "d"} and manifest["items"]["c"]["item"] == "c"
    with pytest.raises(ValueError, match="batch_size"):
        process_batches(run, items, fn, batch_size=0, desc="t", unit="f")


def test_execution_only_settings_keep_the_fingerprint(tmp_path):
    from roadparse.config import MasksSettings

    ws = Workspace(tmp_path)
    base = ws.begin("masks", MasksSettings())
    base.finish()
    assert ws.begin("masks", MasksSettings(image_batch=8, points_per_batch=64, device="cpu")).complete
    assert not ws.begin("masks", MasksSettings(min_mask_area=10)).complete
    assert "device" not in base.settings and base.settings["min_mask_area_cm2"] == 187.5


def test_finished_says_whether_begin_would_skip_and_touches_nothing(tmp_path):
    from roadparse.config import MasksSettings

    ws = Workspace(tmp_path)
    assert ws.finished("masks", MasksSettings()) is None
    run = ws.begin("masks", MasksSettings(), inputs={"roi": "abc"})
    run.record_item("t1", {"n": 1})
    run.finish()
    manifest = ws.finished("masks", MasksSettings(device="cpu"), inputs={"roi": "abc"})
    assert manifest is not None and manifest["fingerprint"] == run.fingerprint
    files = sorted(path for path in tmp_path.rglob("*"))
    assert ws.finished("masks", MasksSettings(min_mask_area=10), inputs={"roi": "abc"}) is None
    assert ws.finished("masks", MasksSettings(), inputs={"roi": "changed"}) is None
    assert sorted(path for path in tmp_path.rglob("*")) == files  # a stale check leaves the stage as it was
    assert ws.begin("masks", MasksSettings(), inputs={"roi": "abc"}).complete


def test_require_manifest_names_command(tmp_path):
    with pytest.raises(ValueError, match="roadparse roi"):
        Workspace(tmp_path).require_manifest("roi")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        Workspace(tmp_path / "file")


def test_manifest_json_has_exactly_the_keys_of_stage_manifest(tmp_path):
    ws = Workspace(tmp_path)
    run = ws.begin("masks", {"k": 1}, inputs={"roi": "abc"})
    run.record_item("a", {"n": 1})
    run.record_failure("b", "unreadable")
    returned = run.finish({"tiles": 2})
    on_disk = json.loads((tmp_path / "masks" / "manifest.json").read_text())
    required = [key for key in StageManifest.__annotations__ if key != "worker_environments"]  # NotRequired
    assert list(on_disk) == required == list(returned)
    assert on_disk["summary"] == {"items": 1, "failed": 1, "tiles": 2}
    assert on_disk["failed"] == {"b": "unreadable"}
    assert ws.read_manifest("masks") == ws.require_manifest("masks") == on_disk
    assert ws.begin("masks", {"k": 1}, inputs={"roi": "abc"}).manifest == on_disk
    # items computed by workers elsewhere: their environments come last, the only optional key
    again = ws.begin("masks", {"k": 2}, inputs={"roi": "abc"})
    again.worker_environments = [{"cpu": "elsewhere"}]
    assert list(again.finish()) == list(StageManifest.__annotations__)
    assert json.loads((tmp_path / "masks" / "manifest.json").read_text())["worker_environments"] == [{"cpu": "elsewhere"}]


def test_manifest_records_the_environment_outside_the_fingerprint(tmp_path, monkeypatch):
    """What computed a stage (CPU, package versions, BLAS kernels, threads) is in its manifest, so runs on two
    machines can be compared; another machine does not make a finished stage run again."""
    import numpy as np
    import torch

    import roadparse.workspace as workspace_module
    from roadparse.config import MasksSettings

    np.ones(2) @ np.ones(2)  # numpy's BLAS loaded
    ws = Workspace(tmp_path)
    run = ws.begin("masks", MasksSettings())
    manifest = run.finish()
    env = json.loads((tmp_path / "masks" / "manifest.json").read_text())["environment"]
    assert env == manifest["environment"]
    assert env["packages"]["numpy"] == np.__version__ and env["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["torch_threads"] == torch.get_num_threads() and env["cpu_count"] >= 1 and env["python"]
    assert any(pool["internal_api"] in ("openblas", "mkl", "blis") and pool["num_threads"] >= 1 for pool in env["blas"])
    other = {**env, "cpu": "another CPU", "packages": {**env["packages"], "numpy": "0.0"}}
    monkeypatch.setattr(workspace_module, "environment", lambda: other)
    again = ws.begin("masks", MasksSettings())
    assert again.complete and again.fingerprint == run.fingerprint


def test_the_environment_does_not_depend_on_what_the_process_imported_first():
    """Two identical workers report one environment: the BLAS / OpenMP pools listed are those of every numeric
    library the stages use, in one order, whether the process had loaded scikit-learn, SciPy or OpenCV yet."""
    import subprocess
    import sys

    script = "import json, {}\nfrom roadparse.workspace import environment\nprint(json.dumps(environment()['blas']))"
    reports = [
        json.loads(subprocess.run([sys.executable, "-c", script.format(first)], check=True, capture_output=True, text=True).stdout)
        for first in ("torch", "torch, cv2, sklearn.cluster", "torch, scipy.linalg")
    ]
    assert reports[0] == reports[1] == reports[2]
    assert {"openblas", "openmp"} <= {pool["internal_api"] for pool in reports[0]}
