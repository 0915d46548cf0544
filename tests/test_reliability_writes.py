"""Writes that must never lose finished work or mix two runs (issue #27).

- one writer per work directory: a second writer fails at once naming the first, or waits with
  ``--wait``; a killed writer leaves no stale lock; readers need no lock;
- failures before work starts (a model that does not load, a refused input) leave a finished
  stage's bytes and mtimes as they were;
- a full disk stops the stage (it is not an item failure): the finished items stay journalled, the
  rerun resumes, the message says what is free and never suggests chmod; ``--retry-failed``.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.io.images import write_image
from roadparse.locking import LOCK_NAME, WorkdirBusy, WorkdirLock, holds, read_holder
from roadparse.workspace import Workspace

SRC = Path(__file__).resolve().parents[1] / "src"
HOLDER = """
import sys, time
from roadparse.locking import WorkdirLock
lock = WorkdirLock(sys.argv[1], command="roadparse masks work --generator slic")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""
ROI = ["--mode", "none", "--set", "roi.tile_size=64", "--set", "roi.gsd_cm=0.25"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def hold_in_another_process(root: Path, seconds: float) -> subprocess.Popen[str]:
    """Returns a process that holds ``root``'s lock for ``seconds`` (it has taken it when this returns)."""
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(seconds)], stdout=subprocess.PIPE, text=True, env=_env())
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.fixture()
def frame(tmp_path: Path) -> Path:
    path = tmp_path / "frames" / "f.png"
    write_image(path, np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    return path


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path: Path, frame: Path) -> None:
    work = tmp_path / "work"
    holder = hold_in_another_process(work, 60)
    try:
        (work / "settings.yaml").write_text("roi: {tile_size: 64}\n")
        started = time.monotonic()
        result = CliRunner().invoke(main, ["roi", str(frame.parent), str(work), *ROI])
        assert time.monotonic() - started < 20
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert f"PID {holder.pid} on " in lines[0] and "(roadparse masks work --generator slic)" in lines[0]
        assert lines[0].startswith(f"Error: {work}: another roadparse command is writing this work directory")
        assert lines[0].endswith("wait for it to end, or pass --wait to start when it does")
        assert (work / "settings.yaml").read_text() == "roi: {tile_size: 64}\n"  # nothing written
        assert sorted(p.name for p in work.iterdir()) == [LOCK_NAME, "settings.yaml"]
        # readers take no lock
        status = CliRunner().invoke(main, ["status", str(work)])
        assert status.exit_code == 0 and "roi" in status.output
        # a library caller is refused at the stage's first write, before anything changes
        workspace = Workspace(work)
        run = workspace.begin("masks", {"k": 1})
        with pytest.raises(WorkdirBusy, match=f"PID {holder.pid} on "):
            run.set_total(3)
        assert not (work / "masks" / ".items").exists()
    finally:
        holder.kill()
        holder.wait()


def test_wait_queues_behind_the_writer(tmp_path: Path, frame: Path) -> None:
    work = tmp_path / "work"
    holder = hold_in_another_process(work, 3)
    try:
        started = time.monotonic()
        result = CliRunner().invoke(main, ["roi", str(frame.parent), str(work), *ROI, "--wait"])
        waited = time.monotonic() - started
    finally:
        holder.wait()
    assert result.exit_code == 0, result.output
    assert waited > 1.0  # it queued: the holder still had most of its 3 s when the command started
    assert (work / "roi" / "manifest.json").exists()
    assert not holds(work)  # released with the command


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path, frame: Path) -> None:
    work = tmp_path / "work"
    holder = hold_in_another_process(work, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert read_holder(work) is not None and read_holder(work).pid == holder.pid  # type: ignore[union-attr]
    result = CliRunner().invoke(main, ["roi", str(frame.parent), str(work), *ROI])
    assert result.exit_code == 0, result.output


def test_holds_are_counted_in_one_process(tmp_path: Path) -> None:
    outer = WorkdirLock(tmp_path)
    with WorkdirLock(tmp_path) as inner:  # a command that runs stages taking the lock again
        assert inner.held and holds(tmp_path)
    assert holds(tmp_path)
    assert read_holder(tmp_path).pid == os.getpid()  # type: ignore[union-attr]
    outer.release()
    assert not holds(tmp_path)
    probe = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path), "0"], capture_output=True, text=True, env=_env())
    assert probe.returncode == 0 and probe.stdout.strip() == "held", probe.stderr


def test_a_stage_run_by_a_library_caller_holds_the_lock_until_it_finishes(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    run = workspace.begin("roi", {"k": 1})
    assert not holds(tmp_path)
    run.set_total(1)
    assert holds(tmp_path)
    run.finish()
    assert not holds(tmp_path)


def test_the_lock_file_is_not_replaced(tmp_path: Path) -> None:
    """A waiter holds the lock of an inode: writing the holder's name must keep the file's inode."""
    (tmp_path / LOCK_NAME).write_text("")
    inode = (tmp_path / LOCK_NAME).stat().st_ino
    with WorkdirLock(tmp_path, command="roadparse roi x work"):
        assert read_holder(tmp_path).command == "roadparse roi x work"  # type: ignore[union-attr]
    assert (tmp_path / LOCK_NAME).stat().st_ino == inode


def test_an_unwritable_lock_file_is_the_unwritable_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def failing_open(path: str | os.PathLike[str], flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    result = CliRunner().invoke(main, ["masks", str(tmp_path / "work")])
    assert result.exit_code == 1
    assert "the file system is read-only" in result.output and "chmod" not in result.output, result.output


# ---- a full disk is not a bad item


MASKS = ["--generator", "felzenszwalb", "--set", "masks.min_mask_area=50", "--set", "masks.image_batch=1"]


@pytest.fixture()
def tiled(tmp_path: Path) -> Path:
    """Returns a work directory whose roi is done: 2 frames of 128x128 -> 8 tiles of 64x64."""
    rng = np.random.default_rng(1)
    for index in range(2):
        image = np.full((128, 128, 3), 90, np.uint8)
        image[:, 40:56] = 230  # a marking, so that tiles get several masks
        write_image(tmp_path / "frames" / f"f{index}.png", image + rng.integers(0, 20, image.shape, dtype=np.uint8))
    work = tmp_path / "work"
    result = CliRunner().invoke(main, ["roi", str(tmp_path / "frames"), str(work), *ROI])
    assert result.exit_code == 0, result.output
    return work


def _status(work: Path) -> dict[str, str]:
    output = CliRunner().invoke(main, ["status", str(work)]).output
    return {line.split()[0]: line.split(None, 1)[1] for line in output.splitlines() if line.strip()}


def _full_after(calls: int, real: object) -> object:
    """Returns ``real`` that raises ENOSPC from its ``calls + 1``-th call on, as a full disk does."""
    count = {"n": 0}

    def writer(path: object, *args: object, **kwargs: object) -> object:
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)  # type: ignore[operator]

    return writer


def test_a_full_disk_stops_masks_keeps_the_finished_tiles_and_the_rerun_resumes(tiled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roadparse.stages import masks

    with monkeypatch.context() as patch:
        patch.setattr(masks, "atomic_write_json", _full_after(3, masks.atomic_write_json))
        result = CliRunner().invoke(main, ["masks", str(tiled), *MASKS])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]  # after the progress bar
    assert line.startswith(f"Error: {tiled / 'masks'}: the disk is full (No space left on device)"), result.output
    assert " free; the 3 finished item(s) took " in line and ", the 5 left need about " in line, line
    assert line.endswith("then run the same command again: finished items are kept") and "chmod" not in line
    assert _status(tiled)["masks"] == "partial (3 of 8)"  # nothing recorded as failed
    assert not list((tiled / "masks").rglob("*.tmp")) and not (tiled / "masks" / ".failed").exists()
    finished = {p: p.stat().st_mtime_ns for p in (tiled / "masks").glob("*.json")}
    assert len(finished) == 3

    result = CliRunner().invoke(main, ["masks", str(tiled), *MASKS])
    assert result.exit_code == 0 and "0 failed" in result.output, result.output
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # resumed, not redone
    assert _status(tiled)["masks"] == "done (8 items)"


def test_a_full_disk_stops_roi_without_half_a_frame(tiled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame's tiles are all written or none: the tile written before the disk filled is removed."""
    from roadparse.stages import roi

    shutil_rmtree(tiled)
    with monkeypatch.context() as patch:
        patch.setattr(roi, "write_image", _full_after(5, roi.write_image))  # frame 0's 4 tiles, then 1 of frame 1
        result = CliRunner().invoke(main, ["roi", str(tiled.parent / "frames"), str(tiled), *ROI])
    assert result.exit_code == 1 and "the disk is full" in result.output, result.output
    assert _status(tiled)["roi"] == "partial (1 of 2)"
    assert sorted(p.name for p in (tiled / "roi" / "tiles").iterdir()) == [f"f0_x{x}_y{y}.png" for x in (0, 64) for y in (0, 64)]
    result = CliRunner().invoke(main, ["roi", str(tiled.parent / "frames"), str(tiled), *ROI])
    assert result.exit_code == 0 and "8 tiles" in result.output and "0 failed" in result.output, result.output


def shutil_rmtree(work: Path) -> None:
    import shutil

    shutil.rmtree(work)


def test_a_completely_full_disk_says_so_without_chmod(tmp_path: Path, frame: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not even settings.yaml can be written: the message is the disk's, with the free space, not permissions."""
    import tempfile

    work = tmp_path / "work"
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: object, dir: str | Path | None = None, **kwargs: object) -> tuple[int, str]:  # noqa: A002
        if dir is not None and Path(dir).resolve().is_relative_to(work.resolve()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(dir) / ".settings.yaml.tmp"))
        return real_mkstemp(*args, dir=dir, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    result = CliRunner().invoke(main, ["roi", str(frame.parent), str(work), *ROI])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {work}: the disk is full (No space left on device) writing {work}"), result.output
    assert " free; make space (or move WORKDIR to a larger disk)" in result.output
    assert "chmod" not in result.output and result.output.count("\n") == 1


def test_retry_failed_processes_the_failed_items_again(tiled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roadparse.io.images import ImageReadError
    from roadparse.stages import masks

    real_read = masks.read_image

    def flaky(path: Path, **kwargs: bool) -> np.ndarray:
        if Path(path).name == "f1_x64_y64.png":
            raise ImageReadError(f"{path}: corrupt or truncated image: a bad read")
        return real_read(path, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(masks, "read_image", flaky)
        result = CliRunner().invoke(main, ["masks", str(tiled), *MASKS])
    assert result.exit_code == 0 and "1 failed" in result.output, result.output
    finished = {p: p.stat().st_mtime_ns for p in (tiled / "masks").glob("f*.json")}
    assert len(finished) == 7
    again = CliRunner().invoke(main, ["masks", str(tiled), *MASKS])
    assert again.exit_code == 0 and "1 failed" in again.output  # a finished stage is not redone by itself
    assert _status(tiled)["masks"] == "done (7 items), 1 failed"
    retried = CliRunner().invoke(main, ["masks", str(tiled), *MASKS, "--retry-failed"])
    assert retried.exit_code == 0 and "0 failed" in retried.output, retried.output
    assert _status(tiled)["masks"] == "done (8 items)"
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # only the failed tile was done again


# ---- strict YAML: what plain YAML resolves silently is refused, naming the line

MERGE_MAP_CASES = {
    "the issue's map": ("clusters: {0: road, 0: other, true: road, 0.9: white_marking}\n",
                        "merge map is not valid YAML: line 1, column 21: key '0' is given twice (first on line 1)"),
    "duplicate": ("clusters:\n  0: road\n  1: other\n  0: white_marking\n",
                  "merge map is not valid YAML: line 4, column 3: key '0' is given twice (first on line 2)"),
    "boolean": ("clusters:\n  0: road\n  true: other\n",
                "merge map is not valid YAML: line 3, column 3: key 'true' is a boolean; a key is a name or an integer "
                "(quote it, 'true', to mean the text)"),
    "fraction": ("clusters:\n  0: road\n  0.9: other\n",
                 "merge map is not valid YAML: line 3, column 3: key '0.9' is a number with a fraction; a key is a name "
                 "or an integer (quote it, '0.9', to mean the text)"),
    "text": ("clusters:\n  0: road\n  '0.9': other\n", "line 3: cluster id '0.9' is not an integer"),
    "twice as text": ("clusters:\n  0: road\n  '0': other\n", "line 3: cluster 0 is given twice (as 0 and '0')"),
    "alias": ("clusters:\n  0: &r road\n  1: *r\n",
              "merge map is not valid YAML: line 2, column 6: YAML anchors and aliases (&name, *name) are not accepted here; "
              "write each value out"),
}


@pytest.mark.parametrize("case", list(MERGE_MAP_CASES))
def test_a_merge_map_with_an_ambiguous_key_is_refused_by_line(tmp_path: Path, case: str) -> None:
    from roadparse.artifacts import read_merge_map

    text, message = MERGE_MAP_CASES[case]
    path = tmp_path / "merge_map.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        read_merge_map(path)
    sep = " " if message.startswith("line") else ": "
    assert str(error.value) == f"{path}{sep}{message}"


def test_merge_map_keys_that_are_integer_text_still_read(tmp_path: Path) -> None:
    from roadparse.artifacts import read_merge_map

    path = tmp_path / "merge_map.yaml"
    path.write_text("clusters:\n  0: road\n  '1': other\n")  # the page's JSON keys are text too
    assert read_merge_map(path, 2) == {0: "road", 1: "other"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roi:\n  tile_size: 400\nmasks:\n  min_mask_area: 10\nroi:\n  tile_size: 800\n",
         "line 5, column 1: key 'roi' is given twice (first on line 1)"),
        ("roi:\n  tile_size: 400\n  tile_size: 800\n", "line 3, column 3: key 'tile_size' is given twice (first on line 2)"),
        ("roi: &r\n  tile_size: 400\nmasks: *r\n", "line 1, column 6: YAML anchors and aliases (&name, *name) are not accepted here"),
        ("base: {tile_size: 400}\nroi:\n  <<: {tile_size: 800}\n", "line 3, column 3: YAML merge keys (<<) are not accepted here"),
    ],
)
def test_a_settings_file_with_a_duplicate_key_or_an_alias_is_refused_by_line(tmp_path: Path, text: str, message: str) -> None:
    from roadparse.config import ConfigError, load_settings

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert str(error.value).startswith(f"{path}: not valid YAML: {message}")


def test_a_classes_file_with_a_duplicate_key_is_refused_by_line(tmp_path: Path) -> None:
    from roadparse.io.labels import load_classes

    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  - {name: road, color: [1, 2, 3], name: lane}\n")
    with pytest.raises(ValueError) as error:
        load_classes(path)
    assert str(error.value) == f"{path}: not valid YAML: line 2, column 36: key 'name' is given twice (first on line 2)"


# ---- image values as declared: no data is never labelled or measured; integers scaled by their bit depth

NODATA_BLOCK = (slice(10, 60), slice(20, 120))  # 50 x 100 pixels of no data in a 128 x 192 frame


def _geotiff(path: Path, bands: np.ndarray, nodata: float | None = None) -> Path:
    """Writes (B, H, W) samples as a GeoTIFF in UTM 33N at 1 cm per pixel."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": bands.shape[1], "width": bands.shape[2], "count": bands.shape[0],
               "dtype": str(bands.dtype), "crs": "EPSG:32633", "transform": Affine(0.01, 0, 500000, 0, -0.01, 5000000),
               "nodata": nodata}
    with rasterio.open(path, "w", **profile) as out:
        out.write(bands)
    return path


def _road(seed: int = 0) -> np.ndarray:
    """Returns a (3, 128, 192) float32 frame in 0..1: grey asphalt with a white stripe."""
    rng = np.random.default_rng(seed)
    frame = np.full((3, 128, 192), 0.35, np.float32) + rng.normal(0, 0.02, (3, 128, 192)).astype(np.float32)
    frame[:, :, 90:100] = 0.9
    return frame


def test_nan_nodata_is_never_labelled_or_measured(tmp_path: Path) -> None:
    """Issue #27: a GeoTIFF's NaN block was tiled, segmented, labelled and counted in areas.csv (3.0 m² of
    guardrail from 200x100 NaN pixels). Now it is alpha 0 in the tiles, in no mask, 255 in the predictions."""
    import csv

    from roadparse.artifacts import list_tiles, read_tile_masks
    from roadparse.io import rle
    from roadparse.io.samples import split_alpha

    frame = _road()
    frame[:, NODATA_BLOCK[0], NODATA_BLOCK[1]] = np.nan
    path = _geotiff(tmp_path / "frames" / "nan.tif", frame)
    work = tmp_path / "work"
    assert CliRunner().invoke(main, ["roi", str(path.parent), str(work), *ROI]).exit_code == 0
    result = CliRunner().invoke(main, ["masks", str(work), *MASKS])
    assert result.exit_code == 0, result.output
    workspace = Workspace(work)
    nodata_seen = 0
    for tile in list_tiles(workspace):
        rgb, nodata = split_alpha(read_image_with_alpha(tile.path))
        x, y = tile.position
        expected = np.zeros((64, 64), bool)
        block = expected[max(0, 10 - y) : max(0, 60 - y), max(0, 20 - x) : max(0, 120 - x)]
        block[...] = True
        assert np.array_equal(nodata if nodata is not None else np.zeros((64, 64), bool), expected), tile.id
        nodata_seen += int(expected.sum())
        for record in read_tile_masks(workspace, tile.id):
            assert not (rle.decode(record["rle"]) & expected).any(), (tile.id, record["id"])
    assert nodata_seen == 50 * 100

    model = _tiny_model(tmp_path)
    out = tmp_path / "predictions"
    result = CliRunner().invoke(main, ["predict", str(model), str(path), "--out", str(out),
                                       "--set", "predict.window=64", "--set", "predict.device=cpu", "--gsd-cm", "1"])
    assert result.exit_code == 0, result.output
    from PIL import Image

    labels = np.asarray(Image.open(out / "nan_label.png"))
    assert (labels[NODATA_BLOCK] == 255).all() and (labels != 255).sum() == 128 * 192 - 50 * 100
    rows = list(csv.DictReader((out / "areas.csv").open()))
    assert sum(int(row["pixels"]) for row in rows) == 128 * 192 - 50 * 100
    assert sum(float(row["area_m2"]) for row in rows) == pytest.approx((128 * 192 - 50 * 100) * 1e-4, rel=1e-3)

    import roadparse  # the Python API's predict gives the same labels, no data included

    prediction = roadparse.load_model(model, device="cpu", settings={"window": 64}).predict(path, gsd_cm=1)
    assert np.array_equal(prediction.labels, labels) and (prediction.confidence[NODATA_BLOCK] == 0).all()


def read_image_with_alpha(path: Path) -> np.ndarray:
    from roadparse.io.images import read_image

    return read_image(path, keep_nodata=True)


def _tiny_model(root: Path) -> Path:
    from roadparse.io.labels import load_classes
    from roadparse.models.segmenters import build_segmenter, save_segmenter
    from test_train import tiny_segformer_dir

    classes = load_classes(None)
    model = build_segmenter("segformer", str(tiny_segformer_dir(root, len(classes))), len(classes), pretrained=False)
    save_segmenter(model, root / "model", {"class_names": list(classes.names), "class_colors": [list(c) for c in classes.colors]})
    return root / "model"


def test_a_nodata_value_and_an_alpha_channel_are_no_data_too(tmp_path: Path) -> None:
    from roadparse.io.geo import read_window
    from roadparse.io.samples import split_alpha

    samples = (_road() * 3000).astype(np.uint16) + 1
    samples[:, NODATA_BLOCK[0], NODATA_BLOCK[1]] = 0
    tif = _geotiff(tmp_path / "value.tif", samples, nodata=0)
    rgb, nodata = split_alpha(read_window(tif, (0, 0, 192, 128), keep_nodata=True))
    assert nodata is not None and nodata.sum() == 50 * 100 and nodata[NODATA_BLOCK].all()
    expected = float(samples[:, ~nodata].mean()) / 4095 * 255  # 12-bit by the data's range, not 1/257
    assert expected > 60 and abs(float(rgb[~nodata].mean()) - expected) < 1

    rgba = np.dstack([np.full((128, 192, 3), 90, np.uint8), np.full((128, 192), 255, np.uint8)])
    rgba[NODATA_BLOCK[0], NODATA_BLOCK[1], 3] = 0
    png = tmp_path / "alpha.png"
    write_image(png, rgba)
    _, nodata = split_alpha(read_image_with_alpha(png))
    assert nodata is not None and nodata.sum() == 50 * 100 and nodata[NODATA_BLOCK].all()


def test_twelve_bit_samples_are_scaled_by_their_bit_depth_with_a_note(tmp_path: Path) -> None:
    """Issue #27: 12-bit data in uint16 was scaled by 1/257 (mean 11 instead of 72) with only a generic note."""
    tifffile = pytest.importorskip("tifffile")
    from roadparse.io.images import read_image, sample_scaling

    rng = np.random.default_rng(0)
    samples = rng.integers(0, 2312, (128, 192), dtype=np.uint16)  # mean 1156 of 4095: 72 of 255
    plain = tmp_path / "frames" / "twelve.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, samples)
    image = read_image(plain)
    assert abs(float(image.mean()) - 72) < 1
    scaling = sample_scaling(plain)
    assert scaling is not None and scaling.high == 4095
    assert scaling.note() == "uint16 samples scaled to 8 bit by 255/4095 (12-bit by the data's range: maximum 2311, no bit depth in the file)"
    declared = tmp_path / "declared.tif"
    tifffile.imwrite(declared, samples, extratags=[(281, "H", 1, 8191, True)])  # MaxSampleValue: 13-bit data
    assert abs(float(read_image(declared).mean()) - 1156 / 8191 * 255) < 1
    assert "the file's MaxSampleValue 8191" in sample_scaling(declared).note()  # type: ignore[union-attr]

    work = tmp_path / "work"
    result = CliRunner().invoke(main, ["roi", str(plain.parent), str(work), *ROI])
    assert result.exit_code == 0, result.output
    import json

    record = json.loads((work / "roi" / "manifest.json").read_text())["items"]["twelve"]
    assert f"{scaling.note()} for the tiles" in record["warnings"]
