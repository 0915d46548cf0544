"""Split clusters in the merge map, and the review server's safety: token, localhost, paths, saves."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from roadparse.artifacts import read_merge_map
from roadparse.config import load_settings
from roadparse.io.labels import IGNORE_INDEX, load_classes
from roadparse.merge import class_table
from roadparse.merge_split import Split, split_points
from roadparse.review import views
from roadparse.review.choices import BACKUPS_KEPT, backups
from roadparse.review.server import create_app
from roadparse.review.session import ReviewSession
from roadparse.stages import cluster, pseudolabel
from roadparse.workspace import Workspace
from test_pseudolabel import SETTINGS, build_workspace

TOKEN = "test-token"


@pytest.fixture()
def clustered(tmp_path: Path) -> tuple[Workspace, Path]:
    workspace, labels_dir = build_workspace(tmp_path)
    cluster.run(workspace, load_settings(overrides=SETTINGS), labels_dir=labels_dir)
    return workspace, labels_dir


def _clusters_by_kind(workspace: Workspace) -> dict[str, int]:
    suggested = read_merge_map(workspace.root / "cluster" / "merge_map.suggested.yaml")
    return {name: cluster_id for cluster_id, name in suggested.items()}  # type: ignore[misc]


def test_split_points_are_deterministic_and_numbered_by_size() -> None:
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(0, 0.01, (3, 4)) + [1, 0, 0, 0], rng.normal(0, 0.01, (7, 4)) + [0, 1, 0, 0]])
    parts = split_points(points, 2, seed=0)
    assert parts.tolist() == [1] * 3 + [0] * 7  # part 0 is the largest
    np.testing.assert_array_equal(split_points(points, 2, seed=0), parts)
    with pytest.raises(ValueError, match="splits into 2..8 parts, not 11"):
        split_points(points, 11, seed=0)


def test_merge_map_reads_old_and_split_entries(tmp_path: Path) -> None:
    path = tmp_path / "merge_map.yaml"
    path.write_text("clusters: {0: road, 1: discard}\n")
    assert read_merge_map(path, 2) == {0: "road", 1: "discard"}  # the original format
    path.write_text("clusters:\n  0: road\n  1: {split: 2, seed: 3, sizes: [5, 4], parts: [white_marking, discard]}\n")
    merge_map = read_merge_map(path, 2)
    assert merge_map[1] == Split(parts=("white_marking", "discard"), seed=3, sizes=(5, 4))
    table = class_table(merge_map, 2, load_classes())
    assert table.tolist() == [0, IGNORE_INDEX]  # split clusters are classed per part
    path.write_text("clusters: {0: road, 1: {split: 3, parts: [road, tree]}}\n")
    with pytest.raises(ValueError, match=r"cluster 1: split: 3 but 2 parts"):
        read_merge_map(path, 2)
    path.write_text("clusters: {0: road, 1: {split: 2, parts: [road, tree]}}\n")
    with pytest.raises(ValueError, match=r"unknown class names \['tree'\]"):
        class_table(read_merge_map(path, 2), 2, load_classes())


def test_pseudolabel_honours_a_split_cluster(clustered: tuple[Workspace, Path]) -> None:
    workspace, _ = clustered
    settings = load_settings(overrides=SETTINGS)
    ids = _clusters_by_kind(workspace)
    session = ReviewSession(workspace, settings)
    parts = session.split_parts(ids["white_marking"], 2, 0)
    sizes = np.bincount(parts).tolist()
    value = {"split": 2, "seed": 0, "sizes": sizes, "parts": ["white_marking", "discard"]}
    merge_map = {"clusters": {ids["road"]: "road", ids["other"]: "other", ids["white_marking"]: value}}
    (workspace.root / "merge_map.yaml").write_text(yaml.safe_dump(merge_map))
    manifest = pseudolabel.run(workspace, settings)
    assert manifest["summary"]["masks"]["white_marking"] == sizes[0]
    # the discarded part's markings show the road mask below them
    assert manifest["summary"]["pixels"]["white_marking"] == 36 * sizes[0]
    assert manifest["summary"]["unlabelled_share"] == 0.0
    # a split that no longer reproduces is an error that says what to do
    value["sizes"] = [sizes[0] + 1, sizes[1] - 1]
    (workspace.root / "merge_map.yaml").write_text(yaml.safe_dump(merge_map))
    with pytest.raises(ValueError, match="no longer reproduces.*roadparse review"):
        pseudolabel.run(workspace, settings)


def test_context_window_keeps_ground_size_and_outlines_thin_masks() -> None:
    image = np.full((100, 100, 3), 90, np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[50, 10:90] = True  # a 1-px line: thinner than a display pixel after shrinking
    window = views.context_window(image, mask, (10, 50, 90, 51), side=400, out=100)
    assert window.shape == (100, 100, 3)
    assert (window == views.OUTLINE_RGB).all(axis=2).any()  # still visible
    assert (window[0, 0] == views.PAD_RGB).all()  # the window reaches past the tile


def _l_and_ring() -> list[np.ndarray]:
    """Returns two (200, 200) bool masks larger than a 40 px window whose box centre lies outside them."""
    l_shape = np.zeros((200, 200), bool)
    l_shape[10:190, 10:40] = True  # the upright
    l_shape[160:190, 10:190] = True  # the foot
    ring = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    radius = np.hypot(yy - 100, xx - 100)
    ring[(radius > 70) & (radius < 95)] = True
    return [l_shape, ring]


def test_context_windows_are_centred_inside_the_mask() -> None:
    for mask in _l_and_ring():
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        assert not mask[(bbox[1] + bbox[3]) // 2, (bbox[0] + bbox[2]) // 2]  # the box centre is outside
        x, y = views.interior_point(mask, bbox)
        assert mask[y, x]
        border = mask & ~np.pad(mask, 1)[2:, 1:-1] | mask & ~np.pad(mask, 1)[:-2, 1:-1]
        assert min(np.hypot(*np.nonzero(border)[::-1] - np.array([[x], [y]]))) >= 10  # well inside, not on an edge
        image = np.where(mask[..., None], 200, 0).astype(np.uint8).repeat(3, axis=2)
        window = views.context_window(image, mask, bbox, side=40, out=40)
        assert (window[20, 20] == 200).all()  # the member itself in the middle of its thumbnail


def test_a_thin_mask_keeps_its_point_on_the_mask() -> None:
    mask = np.zeros((50, 50), bool)
    mask[10:40, 25] = True
    x, y = views.interior_point(mask, (25, 10, 26, 40))
    assert mask[y, x] and y in (24, 25)  # the middle of the line (nearest its centroid, 24.5)


@pytest.fixture()
def client(clustered: tuple[Workspace, Path]):  # noqa: ANN201
    workspace, _ = clustered
    app = create_app(ReviewSession(workspace, load_settings(overrides=SETTINGS)), TOKEN)
    return app.test_client(), workspace


def test_every_request_needs_the_token_and_localhost(client) -> None:  # noqa: ANN001
    http, _ = client
    for path in ("/", "/api/state", "/api/member/0.jpg", "/static/review.js"):
        assert http.get(path).status_code == 403
        assert http.get(path + "?token=wrong").status_code == 403
        assert http.get(path + f"?token={TOKEN}").status_code == 200, path
    assert http.get("/api/state", headers={"X-Review-Token": TOKEN}).status_code == 200
    assert http.post("/api/save", json={}).status_code == 403
    remote = http.get(f"/api/state?token={TOKEN}", environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert remote.status_code == 403


def test_request_paths_never_reach_the_file_system(client) -> None:  # noqa: ANN001
    http, _ = client
    attempts = [
        "/static/../../../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd", "/static/review.py", "/api/member/..%2F..%2Fmerge_map.yaml.jpg",
        "/api/member/-1.jpg", "/api/member/99999.jpg", "/api/tile/../../etc/passwd",
        "/../../etc/passwd", "//etc/passwd", "/api/member/%2Fetc%2Fpasswd.jpg",
    ]
    for path in attempts:
        response = http.get(path + ("&" if "?" in path else "?") + f"token={TOKEN}")
        assert response.status_code in (400, 404), (path, response.status_code)
        assert b"root:" not in response.data
    assert http.get(f"/api/member/0.jpg?view=../../x&token={TOKEN}").status_code == 400


def test_concurrent_saves_leave_one_whole_map_and_a_backup(client) -> None:  # noqa: ANN001
    http, workspace = client
    ids = _clusters_by_kind(workspace)
    maps = [
        {"clusters": {str(ids["road"]): "road", str(ids["other"]): name, str(ids["white_marking"]): "white_marking"}}
        for name in ("other", "discard")
    ]
    results: list[int] = []

    def save(body: dict) -> None:
        for _ in range(10):
            results.append(http.post(f"/api/save?token={TOKEN}", json=body).status_code)

    threads = [threading.Thread(target=save, args=(m,)) for m in maps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 20
    saved = read_merge_map(workspace.root / "merge_map.yaml", 3)
    assert saved[ids["other"]] in ("other", "discard") and saved[ids["road"]] == "road"
    kept = backups(workspace.root / "merge_map.yaml")
    assert len(kept) == BACKUPS_KEPT and all(read_merge_map(path, 3)[ids["road"]] == "road" for path in kept)
    assert not list(workspace.root.glob(".merge_map.yaml*.tmp"))
    # an incomplete map is refused, naming the clusters left
    response = http.post(f"/api/save?token={TOKEN}", json={"clusters": {str(ids["road"]): "road"}})
    assert response.status_code == 400 and "not mapped" in response.get_json()["error"]
    # reopening restores the saved choices
    state = http.get(f"/api/state?token={TOKEN}").get_json()
    assert state["saved"]["clusters"][str(ids["road"])] == "road"


def test_save_answers_with_the_exact_command_that_continues(client, tmp_path: Path) -> None:  # noqa: ANN001
    from roadparse.artifacts import record_run_command

    http, workspace = client
    body = {"clusters": {str(c): "discard" for c in range(3)}}
    root = workspace.root.resolve()
    # no record of how the run was started: the stage commands, which read WORKDIR/settings.yaml
    answer = http.post(f"/api/save?token={TOKEN}", json=body).get_json()
    assert answer["next"] == [f"roadparse pseudolabel {root} && roadparse selftrain {root}"]
    # started by `roadparse run` (or roadparse.Run) with a config file: that command, exactly
    workspace.write_settings("cluster: {n_clusters: 3}\n")
    config = tmp_path / "my run.yaml"
    record_run_command(workspace, ["roadparse", "run", str(config), "--set", "cluster.n_clusters=3"])
    answer = http.post(f"/api/save?token={TOKEN}", json=body).get_json()
    assert answer["next"] == [f"roadparse run '{config}' --set cluster.n_clusters=3"]
    assert "CONFIG" not in str(answer)
    # a stage run since with other settings: the recorded command would undo it
    workspace.write_settings("cluster: {n_clusters: 4}\n")
    answer = http.post(f"/api/save?token={TOKEN}", json=body).get_json()
    assert answer["next"] == [f"roadparse pseudolabel {root} && roadparse selftrain {root}"]


def test_cluster_command_names_the_review_step_first(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main
    from test_pseudolabel import SETTINGS, build_workspace

    workspace, labels_dir = build_workspace(tmp_path)
    overrides = [part for setting in SETTINGS for part in ("--set", setting)]
    result = CliRunner().invoke(main, ["cluster", str(workspace.root), "--labels", str(labels_dir), *overrides])
    assert result.exit_code == 0, result.output
    printed = result.stdout  # warnings and progress bars go to stderr
    review = printed.index(f"roadparse review {workspace.root.resolve()}")
    assert review < printed.index("gallery") and review < printed.index("merge_map.suggested.yaml")
    assert f"roadparse pseudolabel {workspace.root.resolve()}" in printed


def test_preview_counts_unlabelled_pixels(client) -> None:  # noqa: ANN001
    http, workspace = client
    ids = _clusters_by_kind(workspace)
    everything = {"clusters": {str(c): n for n, c in ids.items()}}
    result = http.post(f"/api/preview?token={TOKEN}", json=everything).get_json()
    assert result["unlabelled"] == 0.0 and result["shares"]["white_marking"] == pytest.approx(108 / 3072, abs=1e-4)
    assert len(result["images"]) == 3 and result["images"][0]["src"].startswith("data:image/jpeg;base64,")
    only_road = http.post(f"/api/preview?token={TOKEN}", json={"clusters": {str(ids["road"]): "road"}}).get_json()
    assert only_road["unlabelled"] == pytest.approx(16 / 64)  # the 'other' strip, unassigned


def test_cli_review_refuses_a_workdir_without_clusters(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main

    result = CliRunner().invoke(main, ["review", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1 and "cluster" in result.output, result.output


def _resample_roi_records(workspace: Workspace) -> None:
    """Rewrites the test work dir's tiles as roi.target_gsd_cm leaves them: tile pixels of 1 cm (scale 0.5 of
    0.5 cm frames) and a valid part without the 'other' strip (columns 48..64 are padding past the frame)."""
    import json

    from test_pseudolabel import HEIGHT, ROAD_WIDTH, WIDTH

    path = workspace.root / "roi" / "manifest.json"
    manifest = json.loads(path.read_text())
    for record in manifest["items"].values():
        for tile in record["tiles"]:
            tile.update(gsd_cm=1.0, scale=0.5, working_offset=[0, 0], valid=[ROAD_WIDTH, HEIGHT], size=[WIDTH, HEIGHT])
    path.write_text(json.dumps(manifest))


def test_review_endpoints_on_resampled_tiles(clustered: tuple[Workspace, Path]) -> None:
    from PIL import Image

    workspace, _ = clustered
    _resample_roi_records(workspace)
    session = ReviewSession(workspace, load_settings(overrides=SETTINGS))  # predict.gsd_cm 0.25: not these tiles'
    http = create_app(session, TOKEN).test_client()
    state = http.get(f"/api/state?token={TOKEN}").get_json()
    assert state["window_m"] == 1.0
    row = next(r for r in range(len(session.clusters)) if session.areas[r] == 36)  # a 6 x 6 marking
    assert session.tile_window_px(session.tile_ids[row]) == 100  # 1 m at the tile's 1 cm/px, not 400 at 0.25
    response = http.get(f"/api/member/{row}.jpg?token={TOKEN}")
    assert response.status_code == 200
    import io

    thumb = np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB")).astype(int)
    x0, y0, x1, y1 = session.boxes[row]
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    inside = (min(64, cx + 50) - max(0, cx - 50)) * (min(48, cy + 50) - max(0, cy - 50)) / 100**2
    tile_share = (np.abs(thumb - np.array(views.PAD_RGB)).sum(axis=2) > 30).mean()
    assert tile_share == pytest.approx(inside, abs=0.04)  # the window is 100 tile px wide
    assert http.get(f"/api/tile/{row}.jpg?token={TOKEN}").status_code == 200
    assert http.get(f"/api/member/{row}.jpg?view=crop&token={TOKEN}").status_code == 200
    ids = _clusters_by_kind(workspace)
    only_road = http.post(f"/api/preview?token={TOKEN}", json={"clusters": {str(ids["road"]): "road"}}).get_json()
    assert only_road["unlabelled"] == 0.0  # the unassigned 'other' strip is padding now: not counted (was 16 / 64)
    everything = {"clusters": {str(c): n for n, c in ids.items()}}
    result = http.post(f"/api/preview?token={TOKEN}", json=everything).get_json()
    assert result["shares"]["white_marking"] == pytest.approx(108 / (48 * 48), abs=1e-4)  # was 108 / (64 * 48)
    assert len(result["images"]) == 3


def test_suggested_split_is_offered_saved_and_painted(tmp_path: Path) -> None:
    from test_auto_split import MIXED, clustered_with_earlier_split

    workspace, _, mixed = clustered_with_earlier_split(tmp_path)  # a split an earlier version suggested
    settings = load_settings(overrides=MIXED)
    suggested_path = workspace.root / "cluster" / "merge_map.suggested.yaml"
    http = create_app(ReviewSession(workspace, settings), TOKEN).test_client()
    state = http.get(f"/api/state?token={TOKEN}").get_json()
    entry = next(c for c in state["clusters"] if c["id"] == mixed)
    assert entry["suggested_split"] == {
        "split": 2, "seed": 0, "sizes": [9, 3], "parts": ["white_marking", "other"], "unsplit": "other",
    }
    assert entry["suggestion"] == "other" and entry["suggestion_warning"] is None
    plain = next(c for c in state["clusters"] if c["id"] != mixed)
    assert plain["suggestion"] == "road" and plain["suggested_split"] is None
    # the parts the page fetches for it are the suggestion's
    parts = http.post(f"/api/split?token={TOKEN}", json={"cluster": mixed, "k": 2, "seed": 0}).get_json()
    assert parts["sizes"] == [9, 3]

    # Save as the page sends an accepted suggestion: the split entry with its sizes
    value = {k: entry["suggested_split"][k] for k in ("split", "seed", "sizes", "parts")}
    body = {"clusters": {str(mixed): value, str(plain["id"]): "road"}}
    assert http.post(f"/api/save?token={TOKEN}", json=body).status_code == 200
    saved = read_merge_map(workspace.root / "merge_map.yaml", 2)
    assert saved[mixed] == Split(parts=("white_marking", "other"), seed=0, sizes=(9, 3))
    reopened = http.get(f"/api/state?token={TOKEN}").get_json()
    assert reopened["saved"]["clusters"][str(mixed)] == value
    summary = pseudolabel.run(workspace, settings)["summary"]
    assert summary["pixels"]["white_marking"] == 3 * 3 * 36 and summary["unlabelled_pixels"] == 0

    # a suggested split that no longer reproduces: the unsplit class, with a warning
    suggested_path.write_text(suggested_path.read_text().replace("sizes: [9, 3]", "sizes: [8, 4]"))
    stale = create_app(ReviewSession(workspace, settings), TOKEN).test_client()
    entry = next(c for c in stale.get(f"/api/state?token={TOKEN}").get_json()["clusters"] if c["id"] == mixed)
    assert entry["suggested_split"] is None and entry["suggestion"] == "other"
    assert "no longer reproduces (parts of [9, 3] masks, the suggestion says [8, 4])" in entry["suggestion_warning"]
    assert "suggesting the unsplit class other" in entry["suggestion_warning"]


@pytest.mark.parametrize(
    ("contents", "why"),
    [(b"clusters: {0: road\n# WARNING: no cluster is suggested as cone\n", "not valid YAML"), (b"\xff\xfe\x00", "not UTF-8")],
)
def test_an_unreadable_suggestion_is_ignored_whole(
    clustered: tuple[Workspace, Path], contents: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    workspace, _ = clustered
    settings = load_settings(overrides=SETTINGS)
    (workspace.root / "cluster" / "merge_map.suggested.yaml").write_bytes(contents)
    with caplog.at_level("WARNING"):
        state = ReviewSession(workspace, settings).state()
    # values, per-cluster notes and header warnings come from one read: none of them from a map that does not parse
    assert all(c["suggestion"] is None and c["suggestion_note"] is None for c in state["clusters"])
    assert state["suggestion_warnings"] == []
    assert "review: ignoring the suggestion" in caplog.text and why in caplog.text


def test_saves_keep_the_last_backups_with_their_times(client) -> None:  # noqa: ANN001
    """Issue #27: one .bak lost a hand-edited map after two saves; the page keeps the last five, named by time."""
    http, workspace = client
    ids = _clusters_by_kind(workspace)
    path = workspace.root / "merge_map.yaml"
    path.write_text(f"# edited by hand\nclusters: {{{ids['road']}: road, {ids['other']}: other, {ids['white_marking']}: white_marking}}\n")
    body = {"clusters": {str(ids["road"]): "road", str(ids["other"]): "discard", str(ids["white_marking"]): "white_marking"}}
    first = http.post(f"/api/save?token={TOKEN}", json=body).get_json()
    for _ in range(7):
        assert http.post(f"/api/save?token={TOKEN}", json=body).status_code == 200
    kept = backups(path)
    assert len(kept) == BACKUPS_KEPT and first["backup"] not in map(str, kept)  # the oldest went first
    assert all(p.name.startswith("merge_map.yaml.2") and p.name.endswith(".bak") for p in kept)
    assert kept == sorted(kept, key=lambda p: p.stat().st_mtime_ns)
    two_saves = http.post(f"/api/save?token={TOKEN}", json=body).get_json()  # the hand edit survives two saves
    assert "edited by hand" not in path.read_text() and two_saves["backup"] == str(backups(path)[-1])


def test_a_save_while_a_command_writes_the_work_directory_is_refused(client, tmp_path: Path) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    http, workspace = client
    ids = _clusters_by_kind(workspace)
    body = {"clusters": {str(c): n for n, c in ids.items()}}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from roadparse.locking import WorkdirLock; "
         "lock = WorkdirLock(sys.argv[1], command='roadparse run config.yaml'); print('held', flush=True); time.sleep(60)",
         str(workspace.root)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        response = http.post(f"/api/save?token={TOKEN}", json=body)
        assert response.status_code == 409
        error = response.get_json()["error"]
        assert f"PID {holder.pid} on " in error and "(roadparse run config.yaml)" in error and "save again" in error
        assert not (workspace.root / "merge_map.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert http.post(f"/api/save?token={TOKEN}", json=body).status_code == 200


def test_a_negative_split_seed_is_a_clear_message(client) -> None:  # noqa: ANN001
    http, workspace = client
    ids = _clusters_by_kind(workspace)
    response = http.post(f"/api/split?token={TOKEN}", json={"cluster": ids["road"], "k": 2, "seed": -1})
    assert response.status_code == 400
    assert response.get_json()["error"] == "split: seed must be an integer from 0 to 4294967295, got -1"
    path = workspace.root / "map.yaml"
    path.write_text(f"clusters: {{{ids['road']}: {{split: 2, seed: -3, parts: [road, discard]}}}}\n")
    with pytest.raises(ValueError, match=r"cluster \d+: seed must be an integer from 0 to 4294967295, got -3"):
        read_merge_map(path)


SLOW_SAVE = """
import shutil, sys, threading, time
from pathlib import Path
from roadparse.review import choices

path = Path(sys.argv[1])
real_copy = shutil.copyfile

def slow_copy(src, dst, *args, **kwargs):
    real_copy(src, dst, *args, **kwargs)
    print("copying", flush=True)
    time.sleep(3)  # SIGTERM arrives while the backup's temporary file exists
    return dst

choices.shutil.copyfile = slow_copy
try:
    with choices.saves_finish_on_exit():
        threading.Thread(target=choices.save_merge_map, args=(path, "clusters: {0: road}\\n"), daemon=True).start()
        time.sleep(60)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Issue #27: SIGTERM during a save left a 0-byte .merge_map.yaml.bak.*.tmp; the server now finishes the
    save in progress (the request runs on a worker thread) before it exits."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "merge_map.yaml"
    path.write_text("clusters: {0: other}\n")
    child = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert child.stdout is not None and child.stdout.readline().strip() == "copying"
    assert list(tmp_path.glob(".*.tmp"))  # the save is in progress
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and out.strip() == "stopped"
    assert not list(tmp_path.glob(".*.tmp"))
    assert path.read_text() == "clusters: {0: road}\n" and len(backups(path)) == 1
