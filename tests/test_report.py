"""The HTML report: self-contained, images decode, tables list the classes; rendered in headless Chromium."""

import base64
import html
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from roadparse.artifacts import Tile
from roadparse.io.images import write_image
from roadparse.io.labels import load_classes, write_label_png
from roadparse.metrics import evaluate_pairs
from roadparse.report.html import write_report
from roadparse.workspace import Workspace


def _fixture(tmp_path):
    classes = load_classes()
    rng = np.random.default_rng(0)
    frame_label = rng.integers(0, len(classes), (64, 96)).astype(np.uint8)
    (tmp_path / "gt").mkdir()
    write_label_png(tmp_path / "gt" / "frame_0000.png", frame_label, classes)
    tile_path = tmp_path / "tile.png"
    write_image(tile_path, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    tile = Tile("frame_0000_x0_y0", tile_path, "frame_0000.jpg", (0, 0), (64, 64), (64, 64))
    pred = frame_label[:, :64].copy()
    pred[:10] = 255
    (tmp_path / "pseudo").mkdir()
    write_label_png(tmp_path / "pseudo" / f"{tile.id}.png", pred, classes)
    metrics = {"clustering (iter 0)": evaluate_pairs([(tile.id, pred, frame_label[:, :64])], classes.names)}
    ws = Workspace(tmp_path / "run")
    ws.begin("roi", {}).finish({"tiles": 1})
    path = write_report(
        tmp_path / "report.html",
        workspace=ws,
        classes=classes,
        metrics=metrics,
        seconds={"roi": 1.5},
        sample_tiles=[tile],
        label_dirs={"pseudo-label": tmp_path / "pseudo"},
        gt_dir=tmp_path / "gt",
        settings_yaml="roi:\n  mode: offline\n",
        merge_map={"clusters": {0: "road"}},
        gallery_html="<p>gallery</p>",
        notes=["a note"],
    )
    return path, classes, metrics


def test_report_is_self_contained_and_complete(tmp_path):
    path, classes, metrics = _fixture(tmp_path)
    text = path.read_text()
    assert "src='http" not in text and 'src="http' not in text  # nothing fetched from outside
    uris = re.findall(r"src='data:image/(?:jpeg|png);base64,([^']+)'", text)
    assert len(uris) >= 4  # tile, ground truth, pseudo-label, confusion matrix
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).load()
    for name in classes.names:
        assert f"<th>{name}</th>" in text
    assert f"{metrics['clustering (iter 0)']['scores']['miou']:.2f}" in text
    assert "roi" in text and "a note" in text
    # the stage table says what computed each stage (figures can move across machines)
    import numpy

    from roadparse.workspace import environment

    assert "<th>computed on</th>" in text and f"numpy {numpy.__version__}" in text
    assert html.escape(str(environment()["cpu"] or environment()["machine"])) in text


def test_computed_on_names_the_workers_that_computed_a_stage() -> None:
    from roadparse.report.html import computed_on

    here = {"cpu": "Driver CPU", "packages": {"numpy": "2.0"}}
    assert computed_on({"environment": here}) == "Driver CPU · numpy 2.0"
    workers = [{"cpu": "Node CPU", "torch_threads": 1}, {"cpu": "Node CPU", "torch_threads": 1}, {"cpu": "Other CPU"}]
    assert computed_on({"environment": here, "worker_environments": workers}) == (
        "Driver CPU · numpy 2.0; workers: Node CPU · torch ×1 | Other CPU")
    assert computed_on({}) == "—"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (CI installs it in .ci/run)")
def test_report_renders_in_headless_chromium(tmp_path):
    path, classes, _ = _fixture(tmp_path)
    shot = tmp_path / "shot.png"
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1280,2400", path.as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 10  # not a blank page
    dom = subprocess.run([*command[:-3], "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "Results on the labelled dev split" in dom and dom.count("<img") >= 4
