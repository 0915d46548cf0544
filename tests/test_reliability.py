"""Bad inputs through every stage that reads files: each case has its exact message or record.

The corpus (tests/bad_inputs.py): truncated, empty, non-image, 1x1, RGBA, 16-bit, CMYK,
a unicode name, a PNG header declaring 60000x60000 pixels, a symlink loop, and a file
unreadable by permissions (only when not running as root, which ignores permissions).
Readers: ``roi`` frames, ``predict`` inputs, ``evaluate`` label folders, ``pseudolabel``
merge maps, config files. Also: an unwritable work directory.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bad_inputs import IMAGE_SIZE, write_images, write_texts
from roadparse.artifacts import read_merge_map
from roadparse.cli import main
from roadparse.config import ConfigError, load_settings
from roadparse.io.labels import load_classes, write_label_png
from roadparse.stages.evaluate import evaluate_dirs

BOMB = (
    "the header declares 60000x60000 pixels (3600 megapixels), more than the limit of 800 megapixels "
    "(a guard against decompression bombs: a damaged or hostile file). If the image is real, raise the limit: "
    "ROADPARSE_MAX_IMAGE_PIXELS=3600000000 roadparse ..."
)
LOOP = "symlink loop (k_loop.png -> k_loop.png); point the link at an image or remove it"
IMAGE_ERRORS = {
    "truncated": "corrupt or truncated image: image file is truncated",
    "empty": "file is empty",
    "not_image": "not an image (unrecognised format)",
    "bomb": BOMB,
}
"""What reading each bad image says after its path (roi frames, predict inputs)."""
CONVERTED = ("valid", "unicode", "one_pixel", "rgba", "sixteen_bit", "cmyk")
"""Awkward but valid images: converted to RGB and processed."""
AS_ROOT = os.geteuid() == 0
ROOT_SKIP = pytest.mark.skipif(AS_ROOT, reason="running as root: permissions are not enforced")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_images(tmp_path_factory.mktemp("corpus") / "frames")


@pytest.fixture(scope="module")
def roi_run(corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """Runs roi twice on the corpus (the rerun must not die either); returns (manifest, output, workdir)."""
    work = tmp_path_factory.mktemp("roi") / "work"
    args = ["roi", str(corpus["valid"].parent), str(work), "--mode", "none", "--set", "roi.tile_size=64", "--set", "roi.gsd_cm=0.25"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    return json.loads((work / "roi" / "manifest.json").read_text()), first.output, work


@pytest.mark.parametrize("case", [*IMAGE_ERRORS, "unreadable"])
def test_roi_records_a_bad_frame_as_failed(roi_run: tuple[dict, str, Path], corpus: dict[str, Path], case: str) -> None:
    if case == "unreadable" and AS_ROOT:
        pytest.skip("running as root: permissions are not enforced")
    manifest, output, _ = roi_run
    frame_id = corpus[case].stem
    if case == "unreadable":
        assert manifest["failed"][frame_id] == f"{corpus[case]}: cannot open: [Errno 13] Permission denied: '{corpus[case]}'"
    else:
        assert manifest["failed"][frame_id] == f"{corpus[case]}: {IMAGE_ERRORS[case]}"
    assert f"  {frame_id}: failed: {manifest['failed'][frame_id]}" in output


@pytest.mark.parametrize("case", CONVERTED)
def test_roi_converts_awkward_frames(roi_run: tuple[dict, str, Path], corpus: dict[str, Path], case: str) -> None:
    manifest, _, work = roi_run
    record = manifest["items"][corpus[case].stem]
    width, height = (1, 1) if case == "one_pixel" else IMAGE_SIZE
    assert record["frame_size"] == [width, height] and record["warnings"] == []
    expected_tiles = 1 if case == "one_pixel" else 2  # 96x64 in 64-px tiles: x 0 and 32 (edge rule shift)
    assert len(record["tiles"]) == expected_tiles
    for tile in record["tiles"]:
        image = Image.open(work / "roi" / tile["path"])
        assert image.mode == "RGB" and list(image.size) == tile["size"]


def test_roi_lists_a_symlink_loop_as_skipped(roi_run: tuple[dict, str, Path]) -> None:
    manifest, output, _ = roi_run
    assert manifest["summary"]["skipped"] == {"k_loop.png": LOOP}
    assert manifest["summary"]["problems"]["k_loop.png"] == f"skipped: {LOOP}"
    assert f"  k_loop.png: skipped: {LOOP}" in output
    failed = 4 + (0 if AS_ROOT else 1)
    assert f"roi: {len(CONVERTED) + failed} frames -> 11 tiles in" in output and f"{failed} failed, 1 skipped" in output


def test_a_frame_declaring_too_many_pixels_fails_alone_and_the_limit_can_be_raised(tmp_path: Path, corpus: dict[str, Path]) -> None:
    """Issue #13: the bomb was an uncaught DecompressionBombError at the 4th of 13 frames, on every rerun."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(13):
        target = frames / f"frame_{index:02d}.png"
        shutil.copyfile(corpus["bomb"] if index == 3 else corpus["valid"], target)
    result = CliRunner().invoke(main, ["roi", str(frames), str(tmp_path / "work"), "--mode", "none"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "work" / "roi" / "manifest.json").read_text())
    assert manifest["failed"] == {"frame_03": f"{frames / 'frame_03.png'}: {BOMB}"}
    assert manifest["summary"]["items"] == 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from roadparse.models.segmenters import build_segmenter, save_segmenter
    from test_train import tiny_segformer_dir

    root = tmp_path_factory.mktemp("model")
    classes = load_classes(None)
    model = build_segmenter("segformer", str(tiny_segformer_dir(root, len(classes))), len(classes), pretrained=False)
    save_segmenter(model, root / "model", {"class_names": list(classes.names), "class_colors": [list(c) for c in classes.colors]})
    return root / "model"


def test_predict_records_bad_inputs_and_converts_the_rest(model_dir: Path, corpus: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", str(model_dir), str(corpus["valid"].parent), "--out", str(out),
                                       "--set", "predict.window=64", "--set", "predict.device=cpu"])
    assert result.exit_code == 1, result.output  # some inputs failed
    summary = json.loads((out / "summary.json").read_text())
    expected = {str(corpus[case]): f"{corpus[case]}: {message}" for case, message in IMAGE_ERRORS.items()}
    if not AS_ROOT:
        expected[str(corpus["unreadable"])] = f"{corpus['unreadable']}: cannot open: [Errno 13] Permission denied: '{corpus['unreadable']}'"
    assert summary["failed"] == expected
    assert summary["skipped"] == {str(corpus["symlink_loop"]): LOOP}
    assert sorted(Path(image["input"]).stem for image in summary["images"]) == sorted(corpus[c].stem for c in CONVERTED)
    for case in CONVERTED:
        label = np.asarray(Image.open(out / f"{corpus[case].stem}_label.png"))
        assert label.shape == ((1, 1) if case == "one_pixel" else IMAGE_SIZE[::-1])
    for path, reason in {**expected, str(corpus["symlink_loop"]): LOOP}.items():
        assert f"  {path}: {reason}" in result.output


LABEL_ERRORS = {
    "valid": "label maps must be palette or greyscale PNGs, got mode RGB",
    "unicode": "label maps must be palette or greyscale PNGs, got mode RGB",
    "truncated": "not a readable label image: image file is truncated",
    "empty": "file is empty",
    "not_image": "not an image (unrecognised format)",
    "rgba": "label maps must be palette or greyscale PNGs, got mode RGBA",
    "sixteen_bit": "label maps must be palette or greyscale PNGs, got mode I;16",
    "bomb": BOMB,
    "symlink_loop": "not a readable label image: Too many levels of symbolic links",
}


@pytest.mark.parametrize("case", [*LABEL_ERRORS, "one_pixel", "unreadable"])
@pytest.mark.parametrize("side", ["ground truth", "prediction"])
def test_evaluate_names_a_bad_label_file(corpus: dict[str, Path], tmp_path: Path, case: str, side: str) -> None:
    if case == "unreadable" and AS_ROOT:
        pytest.skip("running as root: permissions are not enforced")
    classes = load_classes(None)
    good = np.zeros(IMAGE_SIZE[::-1], dtype=np.uint8)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    bad_dir = gt_dir if side == "ground truth" else pred_dir
    write_label_png((pred_dir if side == "ground truth" else gt_dir) / "x.png", good, classes)
    bad = bad_dir / "x.png"
    if case == "symlink_loop":
        bad.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(bad.name, bad)
    else:
        bad.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus[case], bad)
        if case == "unreadable":
            os.chmod(bad, 0)
    if case == "one_pixel":  # a readable palette label of the wrong size
        write_label_png(bad, np.zeros((1, 1), np.uint8), classes)
        shapes = ((64, 96), (1, 1)) if side == "ground truth" else ((1, 1), (64, 96))
        message = f"x.png: prediction shape {shapes[0]} differs from ground truth shape {shapes[1]}"
        with pytest.raises(ValueError) as error:
            evaluate_dirs(pred_dir, gt_dir)
        assert str(error.value) == message
        return
    expected = f"{bad}: {LABEL_ERRORS.get(case, 'not a readable label image: Permission denied')}"
    with pytest.raises(ValueError) as error:
        evaluate_dirs(pred_dir, gt_dir)
    assert str(error.value) == expected
    result = CliRunner().invoke(main, ["evaluate", str(pred_dir), str(gt_dir)])
    assert result.exit_code == 1 and result.output == f"Error: {expected}\n"


MERGE_MAP = "clusters: {0: road, 1: discard}\n"
MERGE_MAP_ERRORS = {
    "empty": "expected 'clusters:' mapping cluster id -> class name, discard or a split",
    "binary": "not a text file (not UTF-8); a merge map is YAML",
    "not_mapping": "expected 'clusters:' mapping cluster id -> class name, discard or a split",
    "folder": "a folder, not a merge map file",
    "symlink_loop": "cannot read the merge map: Too many levels of symbolic links",
    "unreadable": "cannot read the merge map: Permission denied",
}
CONFIG = "roi:\n  tile_size: 400\n"
CONFIG_ERRORS = {
    "binary": "not a text file (not UTF-8); a config file is YAML (`roadparse config --defaults` prints one)",
    "not_mapping": "expected a mapping of sections, got list",
    "folder": "a folder, not a config file; give the YAML file (`roadparse config --defaults` prints one)",
    "symlink_loop": "cannot read the config file: Too many levels of symbolic links",
    "unreadable": "cannot read the config file: Permission denied",
}
TEXT_CASES = ["valid", "unicode", "empty", "binary", "truncated", "not_mapping", "folder", "symlink_loop",
              pytest.param("unreadable", marks=ROOT_SKIP)]


@pytest.mark.parametrize("case", TEXT_CASES)
def test_merge_map_files(tmp_path: Path, case: str) -> None:
    path = write_texts(tmp_path, MERGE_MAP)[case]
    if case in ("valid", "unicode"):
        assert read_merge_map(path) == {0: "road", 1: "discard"}
        return
    with pytest.raises(ValueError) as error:
        read_merge_map(path)
    if case == "truncated":
        assert str(error.value).startswith(f"{path}: merge map is not valid YAML: while parsing a flow node")
        assert "line 1, column 22" in str(error.value)
    else:
        assert str(error.value) == f"{path}: {MERGE_MAP_ERRORS[case]}"


@pytest.mark.parametrize("case", TEXT_CASES)
def test_config_files(tmp_path: Path, case: str) -> None:
    path = write_texts(tmp_path, CONFIG)[case]
    if case in ("valid", "unicode", "empty"):
        settings = load_settings(path)
        assert (settings.roi.tile_size, settings.roi.tile_size_m) == ((None, 2.0) if case == "empty" else (400, 2.0))
        return
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    if case == "truncated":
        assert str(error.value).startswith(f"{path}: not valid YAML: while parsing a flow node")
        assert "line 2, column 21" in str(error.value)
    else:
        assert str(error.value) == f"{path}: {CONFIG_ERRORS[case]}"
        result = CliRunner().invoke(main, ["pseudolabel", str(tmp_path / "work"), "--config", str(path)])
        shown = f"Invalid value for '--config' / '-c': File '{path}' is a directory." if case == "folder" else f"{path}: {CONFIG_ERRORS[case]}"
        assert result.exit_code == 2 and result.output.endswith(f"Error: {shown}\n"), result.output


# ---- work directories that cannot be written


def _unwritable_by_permissions(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path.chmod(0o555)


def _unwritable_by_a_failing_os(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root permissions are not enforced: make every temporary file in ``path`` fail as EACCES would."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: object, dir: str | Path | None = None, **kwargs: object) -> tuple[int, str]:  # noqa: A002
        if dir is not None and Path(dir).resolve().is_relative_to(path.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(dir) / ".settings.yaml.tmp"))
        return real_mkstemp(*args, dir=dir, **kwargs)  # type: ignore[call-overload]

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.resolve().is_relative_to(path.resolve()) and not self.exists():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    real_mkdir = Path.mkdir
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


@pytest.mark.parametrize(
    "make_unwritable",
    [pytest.param(_unwritable_by_permissions, marks=ROOT_SKIP), _unwritable_by_a_failing_os],
)
@pytest.mark.parametrize("where", ["the work directory", "its parent"])
def test_an_unwritable_work_directory_is_one_line(
    tmp_path: Path, corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch, make_unwritable: object, where: str
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    work = locked if where == "the work directory" else locked / "work"
    make_unwritable(locked, monkeypatch)  # type: ignore[operator]
    result = CliRunner().invoke(main, ["roi", str(corpus["valid"]), str(work), "--mode", "none"])
    locked.chmod(0o755)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {work}: cannot write the work directory (Permission denied); choose a WORKDIR you can write to, "
        f"or make {locked} writable (e.g. chmod u+w {locked})\n"
    )
