"""Cluster → merge map → pseudo-labels → sweep, end to end on a tiny hand-built work directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.config import load_settings
from roadparse.io import rle
from roadparse.io.images import write_image
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png, write_label_png
from roadparse.report.gallery import render_gallery_fragment
from roadparse.stages import cluster, pseudolabel, sweep
from roadparse.workspace import Workspace

HEIGHT, WIDTH, ROAD_WIDTH = 48, 64, 48
MARKINGS = [(5, 5), (20, 20), (30, 8)]  # top-left corners of 6x6 white markings on the road
CLASS_OF_KIND = {"road": 0, "marking": 1, "other": 6}


def _box_mask(box: tuple[int, int, int, int], mask_id: int) -> dict:
    array = np.zeros((HEIGHT, WIDTH), dtype=bool)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = True
    return {"id": mask_id, "rle": rle.encode(array), "bbox": list(box), "area": int(array.sum())}


def build_workspace(root: Path, n_frames: int = 3) -> tuple[Workspace, Path]:
    """Returns a work dir with finished roi/masks/embed stages (layers 1 and 12) and its label dir."""
    workspace = Workspace(root / "work")
    labels_dir = root / "labels"
    classes = load_classes()
    rng = np.random.default_rng(0)
    roi = workspace.begin("roi", {"test": True})
    masks_run = workspace.begin("masks", {"test": True}, inputs={"roi": "x"})
    rows, kinds = [], []
    for f in range(n_frames):
        tile_id = f"frame{f}_t0"
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        image[:, :ROAD_WIDTH] = 90
        image[:, ROAD_WIDTH:] = (40, 140, 40)
        gt = np.full((HEIGHT, WIDTH), CLASS_OF_KIND["road"], np.uint8)
        gt[:, ROAD_WIDTH:] = CLASS_OF_KIND["other"]
        masks = [
            _box_mask((0, 0, ROAD_WIDTH, HEIGHT), 0),
            _box_mask((ROAD_WIDTH, 0, WIDTH, HEIGHT), 1),
        ]
        kinds += ["road", "other"]
        for i, (x, y) in enumerate(MARKINGS):
            image[y : y + 6, x : x + 6] = 240
            gt[y : y + 6, x : x + 6] = CLASS_OF_KIND["marking"]
            masks.append(_box_mask((x, y, x + 6, y + 6), 2 + i))
            kinds.append("marking")
        write_image(workspace.root / "roi" / "tiles" / f"{tile_id}.png", image)
        write_label_png(labels_dir / f"frame{f}.png", gt, classes)
        record = {"tile": tile_id, "height": HEIGHT, "width": WIDTH, "masks": masks}
        (workspace.root / "masks" / f"{tile_id}.json").write_text(__import__("json").dumps(record))
        tile = {
            "id": tile_id,
            "path": f"tiles/{tile_id}.png",
            "offset": [0, 0],
            "size": [WIDTH, HEIGHT],
        }
        roi.record_item(f"frame{f}.jpg", {"frame": f"frame{f}.jpg", "tiles": [tile]})
        masks_run.record_item(tile_id, {"masks": len(masks)})
        rows += [(m["id"], tile_id, *m["bbox"], m["area"]) for m in masks]
    roi.finish()
    masks_run.finish()
    centres = {"road": np.eye(8)[0], "marking": np.eye(8)[1], "other": np.eye(8)[2]}
    embed = workspace.begin("embed", {"test": True}, inputs={"masks": "x"})
    for layer, noise in ((1, 0.3), (12, 0.05)):
        features = np.stack([centres[k] + rng.normal(0, noise, 8) for k in kinds]).astype(
            np.float32
        )
        np.save(workspace.root / "embed" / f"features_layer{layer}.npy", features)
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {"mask_id": pa.array(columns[0], pa.int64()), "tile_id": pa.array(columns[1])}
        | {
            name: pa.array(columns[i + 2], pa.int64())
            for i, name in enumerate(["x0", "y0", "x1", "y1", "area"])
        }
    )
    pq.write_table(table, workspace.root / "embed" / "index.parquet")
    embed.finish({"masks": len(rows)})
    return workspace, labels_dir


SETTINGS = ["cluster.n_clusters=3", "cluster.method=kmeans", "cluster.gallery_size=4"]


@pytest.fixture()
def clustered(tmp_path: Path) -> tuple[Workspace, Path]:
    workspace, labels_dir = build_workspace(tmp_path)
    cluster.run(workspace, load_settings(overrides=SETTINGS), labels_dir=labels_dir)
    return workspace, labels_dir


def test_cluster_stage_writes_assignments_gallery_and_suggestion(
    clustered: tuple[Workspace, Path],
) -> None:
    workspace, _ = clustered
    table = pq.read_table(workspace.root / "cluster" / "assignments.parquet")
    assert table.column_names == ["mask_id", "tile_id", "cluster", "distance"]
    assert table.num_rows == 15
    clusters = np.array(table.column("cluster").to_pylist()).reshape(3, 5)
    # per tile: road, other, 3 markings -> the same three clusters in every tile
    assert len(set(clusters[:, 0])) == 1 and len(set(clusters[:, 2:].ravel())) == 1
    assert len({clusters[0, 0], clusters[0, 1], clusters[0, 2]}) == 3
    suggested = (workspace.root / "cluster" / "merge_map.suggested.yaml").read_text()
    assert "NAMING clusters only" in suggested
    assert (
        f"{clusters[0, 0]}: road" in suggested and f"{clusters[0, 2]}: white_marking" in suggested
    )
    page = (workspace.root / "cluster" / "gallery" / "index.html").read_text()
    assert page.count("class='rp-row'") == 3 and "clusters:" in page
    assert (
        len(list((workspace.root / "cluster" / "gallery").glob("*.jpg"))) == 3 + 3 + 4
    )  # road and other have 3 masks each
    fragment = render_gallery_fragment(workspace)
    assert "data:image/jpeg;base64," in fragment and "cluster " in fragment


def test_pseudolabel_without_merge_map_says_how_to_continue(
    clustered: tuple[Workspace, Path],
) -> None:
    workspace, _ = clustered
    with pytest.raises(ValueError, match=r"gallery/index.html.*cp .*merge_map.suggested.yaml"):
        pseudolabel.run(workspace, load_settings(overrides=SETTINGS))


def test_pseudolabels_match_ground_truth_and_resume(clustered: tuple[Workspace, Path]) -> None:
    workspace, labels_dir = clustered
    settings = load_settings(overrides=SETTINGS)
    shutil.copy(
        workspace.root / "cluster" / "merge_map.suggested.yaml", workspace.root / "merge_map.yaml"
    )
    manifest = pseudolabel.run(workspace, settings)
    out = workspace.root / "pseudolabel" / "labels"
    for f in range(3):
        np.testing.assert_array_equal(
            read_label_png(out / f"frame{f}_t0.png"), read_label_png(labels_dir / f"frame{f}.png")
        )
    summary = manifest["summary"]
    assert summary["items"] == 3 and summary["unlabelled_share"] == 0.0
    assert summary["pixels"]["white_marking"] == 3 * 3 * 36
    assert summary["masks"] == {"road": 3, "white_marking": 9, "yellow_marking": 0, "guardrail": 0,
                                "crack_sealing": 0, "traffic_cone": 0, "other": 3}  # fmt: skip

    # complete: a second run rewrites nothing
    stamp = (out / "frame0_t0.png").stat().st_mtime_ns
    assert pseudolabel.run(workspace, settings)["fingerprint"] == manifest["fingerprint"]
    assert (out / "frame0_t0.png").stat().st_mtime_ns == stamp

    # comments and key order in the merge map paint nothing: still complete
    path = workspace.root / "merge_map.yaml"
    lines = path.read_text().splitlines()
    entries = [line for line in lines if line.startswith("  ")]
    path.write_text("# reviewed by hand\nclusters:\n" + "\n".join(reversed([e.split("#")[0] + "# ok" for e in entries])) + "\n")
    assert pseudolabel.run(workspace, settings)["fingerprint"] == manifest["fingerprint"]
    assert (out / "frame0_t0.png").stat().st_mtime_ns == stamp

    # interrupted after two tiles: only the third is painted again
    (workspace.root / "pseudolabel" / "manifest.json").unlink()
    (workspace.root / "pseudolabel" / ".items" / "frame2_t0.json").unlink()
    (out / "frame2_t0.png").unlink()
    os.utime(out / "frame0_t0.png", ns=(1, 1))
    resumed = pseudolabel.run(workspace, settings)
    assert (out / "frame0_t0.png").stat().st_mtime_ns == 1
    assert (out / "frame2_t0.png").exists() and resumed["summary"] == summary


def test_changed_merge_map_repaints_and_discard_shows_mask_below(
    clustered: tuple[Workspace, Path],
) -> None:
    workspace, _ = clustered
    settings = load_settings(overrides=SETTINGS)
    shutil.copy(
        workspace.root / "cluster" / "merge_map.suggested.yaml", workspace.root / "merge_map.yaml"
    )
    first = pseudolabel.run(workspace, settings)
    text = (
        (workspace.root / "merge_map.yaml")
        .read_text()
        .replace(": white_marking", ": discard")
        .replace(": other", ": discard")
    )
    (workspace.root / "merge_map.yaml").write_text(text)
    second = pseudolabel.run(workspace, settings)
    assert second["fingerprint"] != first["fingerprint"]
    label = read_label_png(workspace.root / "pseudolabel" / "labels" / "frame0_t0.png")
    assert (label[:, :ROAD_WIDTH] == 0).all()  # discarded markings: the road mask shows through
    assert (label[:, ROAD_WIDTH:] == IGNORE_INDEX).all()
    assert second["summary"]["unlabelled_share"] == pytest.approx(16 / 64)


def test_bad_merge_map_class_is_reported(clustered: tuple[Workspace, Path]) -> None:
    workspace, _ = clustered
    (workspace.root / "merge_map.yaml").write_text("clusters: {0: road, 1: tree, 2: discard}\n")
    with pytest.raises(ValueError, match=r"merge_map.yaml: .*unknown class names \['tree'\]"):
        pseudolabel.run(workspace, load_settings(overrides=SETTINGS))


def test_sweep_tables(tmp_path: Path) -> None:
    workspace, labels_dir = build_workspace(tmp_path)
    settings = load_settings(overrides=SETTINGS)
    result = sweep.run(workspace, settings, labels_dir, methods=["kmeans", "agglomerative"])
    assert set(result["results"]) == {
        "layer1/kmeans",
        "layer1/agglomerative",
        "layer12/kmeans",
        "layer12/agglomerative",
    }
    best = result["results"]["layer12/kmeans"]["scores"]
    assert best["miou"] == pytest.approx(100.0) and best["pixel_accuracy"] == pytest.approx(100.0)
    assert best["unlabelled"] == 0.0
    tables = (workspace.root / "sweep" / "tables.md").read_text()
    assert "| hidden 12 |" in tables and "| agglomerative |" in tables and "white_marking" in tables
    assert (workspace.root / "sweep" / "results.json").exists()
    with pytest.raises(ValueError, match=r"layers \[7\] were not embedded \(embedded: \[1, 12\]\)"):
        sweep.run(workspace, settings, labels_dir, layers=[7])


def test_cli_cluster_suggest_pseudolabel(tmp_path: Path) -> None:
    workspace, labels_dir = build_workspace(tmp_path)
    runner = CliRunner()
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    result = runner.invoke(main, ["cluster", str(workspace.root), *sets])
    assert result.exit_code == 0, result.output
    assert "15 masks in 3 clusters" in result.output
    result = runner.invoke(main, ["pseudolabel", str(workspace.root)])
    assert result.exit_code == 1 and "merge map not found" in result.output
    result = runner.invoke(
        main,
        [
            "cluster",
            "suggest",
            str(workspace.root),
            "--labels",
            str(labels_dir),
            "--min-purity",
            "0.9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "white_marking" in result.output and "purity 1.00" in result.output
    shutil.copy(
        workspace.root / "cluster" / "merge_map.suggested.yaml", workspace.root / "merge_map.yaml"
    )
    result = runner.invoke(main, ["pseudolabel", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "3 tiles labelled" in result.output and "0.0% of pixels unlabelled" in result.output


@pytest.mark.slow  # imports transformers; naming logic is covered by test_suggest_zero_shot_with_fake_classifier
def test_cli_zero_shot_without_model_is_skipped_clearly(clustered: tuple[Workspace, Path]) -> None:
    workspace, _ = clustered
    result = CliRunner().invoke(
        main, ["cluster", "suggest", str(workspace.root), "--zero-shot", "/no/such/model"]
    )
    assert result.exit_code == 1 and "zero-shot naming skipped" in result.output
    assert "does not exist" in result.output


def test_zero_shot_suggestion_on_typical_crops(
    clustered: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, _ = clustered

    class BrightnessClassifier:  # stands in for CLIP: white crops are markings, green "other", grey road
        def classify(self, images: list[np.ndarray], labels: list[str]) -> np.ndarray:
            out = np.full((len(images), len(labels)), 0.01)
            for i, image in enumerate(images):
                mean = image.reshape(-1, 3).mean(axis=0)
                best = 1 if mean.mean() > 150 else 6 if mean[1] > mean[0] + 30 else 0
                out[i, best] = 1.0
            return out / out.sum(axis=1, keepdims=True)

    import roadparse.models.zero_shot as zero_shot

    monkeypatch.setattr(
        zero_shot, "load_zero_shot_classifier", lambda name, device="auto": BrightnessClassifier()
    )
    path, suggestions = cluster.suggest_by_zero_shot(
        workspace, load_settings(overrides=SETTINGS), "fake-clip"
    )
    table = pq.read_table(workspace.root / "cluster" / "assignments.parquet")
    first_tile = table.column("cluster").to_pylist()[:3]  # road, other, marking masks of frame 0
    by_cluster = {s["cluster"]: s["class"] for s in suggestions}
    assert [by_cluster[c] for c in first_tile] == ["road", "other", "white_marking"]
    assert "zero-shot fake-clip" in path.read_text()


def test_naming_frames_name_the_clusters_instead_of_the_dev_frames(tmp_path: Path) -> None:
    workspace, labels_dir = build_workspace(tmp_path)
    base = [*SETTINGS, f"run.dev_labels={labels_dir}", 'run.dev_frames=["frame0"]']
    cluster.run(workspace, load_settings(overrides=[*base, 'run.naming_frames=["frame1", "frame2"]']))
    suggested = (workspace.root / "cluster" / "merge_map.suggested.yaml").read_text()
    road_px = ROAD_WIDTH * HEIGHT  # the road mask (its markings included) in one frame
    assert f"{2 * road_px} labelled px" in suggested  # the road cluster, voted on by frames 1 and 2
    cluster.run(workspace, load_settings(overrides=base))  # null: the dev frame names them
    assert f"{road_px} labelled px" in (workspace.root / "cluster" / "merge_map.suggested.yaml").read_text()
    with pytest.raises(ValueError, match="naming_frames"):
        cluster.run(workspace, load_settings(overrides=[*base, 'run.naming_frames=["frame9"]']))


def test_held_out_tiles_are_neither_dev_nor_naming(tmp_path: Path) -> None:
    from roadparse.dev_split import dev_tiles, held_out_tiles, naming_tiles

    workspace, labels_dir = build_workspace(tmp_path)
    run = load_settings(overrides=[f"run.dev_labels={labels_dir}", 'run.dev_frames=["frame0"]',
                                   'run.naming_frames=["frame1"]']).run
    assert [t.id for t in dev_tiles(workspace, run)] == ["frame0_t0"]
    assert [t.id for t in naming_tiles(workspace, run)] == ["frame1_t0"]
    assert [t.id for t in held_out_tiles(workspace, run)] == ["frame2_t0"]
    (labels_dir / "frame2.png").unlink()  # a frame without labels is not held out: it cannot be scored
    assert held_out_tiles(workspace, run) == []


def test_naming_share_draws_tiles_across_the_frames_outside_dev(tmp_path: Path) -> None:
    from roadparse.config import ConfigError
    from roadparse.dev_split import held_out_tiles, naming_tiles

    workspace, labels_dir = build_workspace(tmp_path, n_frames=6)
    base = [f"run.dev_labels={labels_dir}", 'run.dev_frames=["frame0"]']
    run = load_settings(overrides=[*base, "run.naming_share=0.4"]).run
    named = [t.id for t in naming_tiles(workspace, run)]
    assert len(named) == 2 and "frame0_t0" not in named  # round(0.4 x 5), never a dev tile
    assert named == [t.id for t in naming_tiles(workspace, run)]  # the same draw every time
    held = [t.id for t in held_out_tiles(workspace, run)]
    assert sorted(named + held) == [f"frame{f}_t0" for f in range(1, 6)]
    one = load_settings(overrides=[*base, "run.naming_share=0.01"]).run
    assert len(naming_tiles(workspace, one)) == 1  # at least one tile
    cluster.run(workspace, load_settings(overrides=[*SETTINGS, *base, "run.naming_share=0.4"]))
    suggested = (workspace.root / "cluster" / "merge_map.suggested.yaml").read_text()
    assert f"{2 * ROAD_WIDTH * HEIGHT} labelled px" in suggested  # the road cluster, voted on by the two tiles
    with pytest.raises(ConfigError, match="not both"):
        load_settings(overrides=[*base, "run.naming_share=0.4", 'run.naming_frames=["frame1"]'])
    with pytest.raises(ValueError, match="naming_share"):  # every labelled frame is a dev frame
        cluster.run(workspace, load_settings(overrides=[*SETTINGS, f"run.dev_labels={labels_dir}", "run.naming_share=0.4"]))


def test_cluster_ceiling_names_each_cluster_by_its_majority(clustered: tuple[Workspace, Path]) -> None:
    from roadparse.artifacts import assignments_path, list_tiles
    from roadparse.dev_split import cluster_ceiling

    workspace, labels_dir = clustered
    tiles, classes = list_tiles(workspace), load_classes()
    best = cluster_ceiling(workspace, tiles, tiles, labels_dir, classes)
    assert best["scores"]["miou"] == pytest.approx(100.0)  # three pure clusters: the vote names each right
    assert sorted(v for v in best["merge_map"].values() if v) == ["other", "road", "white_marking"]

    table = pq.read_table(assignments_path(workspace))
    clusters = np.array(table.column("cluster").to_pylist()).reshape(3, 5)
    road, marking = int(clusters[0, 0]), int(clusters[0, 2])
    merged = np.where(clusters.ravel() == marking, road, clusters.ravel())  # the markings fall into the road cluster
    pq.write_table(table.set_column(table.column_names.index("cluster"), "cluster", pa.array(merged, pa.int64())),
                   assignments_path(workspace))
    mixed = cluster_ceiling(workspace, tiles, tiles, labels_dir, classes)
    assert mixed["merge_map"][road] == "road" and mixed["merge_map"][marking] is None  # now empty
    assert mixed["scores"]["iou"]["white_marking"] == 0 and mixed["scores"]["iou"]["other"] == pytest.approx(100.0)

    with pytest.raises(ValueError, match="no ground truth for any tile"):  # nothing to name the clusters with
        cluster_ceiling(workspace, tiles, [], labels_dir, classes)
