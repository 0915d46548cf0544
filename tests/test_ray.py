"""roi -> masks -> embed through Ray actors: same outputs as in-process, dead workers retried, resume,
and embed features that do not depend on how the crops were batched or split (issue #15)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from tests.sam_tiny import road_image

from roadparse.artifacts import read_features, read_index
from roadparse.clustering import cluster
from roadparse.config import Settings, load_settings
from roadparse.io.images import write_image
from roadparse.models.offline_masks import OfflineMaskGenerator
from roadparse.stages import embed, masks, roi
from roadparse.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "roi.mode=none", "roi.tile_size=96",
    "masks.generator=felzenszwalb", "masks.min_mask_area=150", "masks.offline_scale=100",
    "embed.encoder=efficientnet-lite0", "embed.layers=[7, 8]", "embed.crop_size=32", "embed.batch_size=4",
    "embed.device=cpu", "embed.mask_background=true",
]
RAY = ["run.executor=ray", "run.ray_workers=2"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'roadparse[distributed]')")
    # workers import roadparse and this module (the generators below) from the checkout
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for index in range(2):
        path = folder / f"f{index}.png"
        write_image(path, road_image(192, 288, seed=index))
        paths.append(path)
    return paths


class _Logged(OfflineMaskGenerator):
    """Felzenszwalb masks; every call leaves a file named after the image, so tests count calls across processes.
    With ``die_on`` set, the process dies (as if killed) the first time it sees that image."""

    def __init__(self, log_dir: Path, die_on: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.log_dir, self.die_on = log_dir, die_on

    def generate(self, image: np.ndarray):
        digest = _digest(image)
        if digest == self.die_on and not (self.log_dir / "died").exists():
            (self.log_dir / "died").write_text(str(os.getpid()))
            os._exit(1)
        (self.log_dir / f"{digest}-{uuid.uuid4().hex}").touch()
        return super().generate(image)


def _digest(image: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(image.tobytes()).hexdigest()[:12]


def _calls(log_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in log_dir.glob("*-*"):
        digest = path.name.split("-")[0]
        counts[digest] = counts.get(digest, 0) + 1
    return counts


def _generator(settings: Settings, log_dir: Path, die_on: str | None = None) -> _Logged:
    from roadparse.config import REFERENCE_GSD_CM
    from roadparse.models.mask_generators import masks_at_gsd

    cfg = masks_at_gsd(settings.masks, REFERENCE_GSD_CM)  # pixel sizes of the synthetic frames' GSD
    log_dir.mkdir(parents=True, exist_ok=True)
    return _Logged(log_dir, die_on, scale=cfg.offline_scale, sigma=cfg.offline_sigma,
                   min_size=cfg.min_mask_area, min_mask_area=cfg.min_mask_area)


def _tile_digests(workspace: Workspace) -> dict[str, str]:
    from roadparse.artifacts import list_tiles
    from roadparse.io.images import read_image

    return {tile.id: _digest(read_image(tile.path)) for tile in list_tiles(workspace)}


def _outputs(root: Path) -> dict[str, bytes]:
    """Every output file a run left, by path: tiles, masks, features, index, colours (not the journals)."""
    files = [*sorted((root / "roi" / "tiles").glob("*.png")), *sorted((root / "masks").glob("*.json"))]
    files += [*sorted((root / "embed").glob("*.npy")), root / "embed" / "index.parquet"]
    return {str(path.relative_to(root)): path.read_bytes() for path in files if path.name != "manifest.json"}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, frames) -> Path:
    """roi -> masks -> embed in this process, with one torch thread like the 1-CPU actors."""
    root = tmp_path_factory.mktemp("local")
    settings = load_settings(None, BASE)
    workspace = Workspace(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        roi.run(workspace, settings, frames)
        masks.run(workspace, settings)
        embed.run(workspace, settings)
    finally:
        torch.set_num_threads(threads)
    return root


def test_ray_run_equals_in_process(ray_cluster, local_run: Path, frames, tmp_path: Path) -> None:
    settings = load_settings(None, [*BASE, *RAY])
    workspace = Workspace(tmp_path)
    roi_manifest = roi.run(workspace, settings, frames)
    assert roi_manifest["summary"]["tiles"] == 12 and not roi_manifest["failed"]
    masks.run(workspace, settings)
    manifest = embed.run(workspace, settings)
    assert manifest["summary"]["masks"] > 20
    local, remote = _outputs(local_run), _outputs(tmp_path)
    assert sorted(local) == sorted(remote)
    assert [name for name in local if local[name] != remote[name]] == []  # the same bytes
    local_roi = json.loads((local_run / "roi" / "manifest.json").read_text())
    for key, record in roi_manifest["items"].items():
        assert record["tiles"] == local_roi["items"][key]["tiles"]
    # the manifest says what computed the items: the driver's environment, and the workers' (1 torch thread each)
    workers = manifest["worker_environments"]
    assert workers and all(w["torch_threads"] == 1 and w["packages"] == manifest["environment"]["packages"] for w in workers)
    assert "worker_environments" not in json.loads((local_run / "embed" / "manifest.json").read_text())


def test_dead_worker_is_retried_and_resume_redoes_nothing(ray_cluster, local_run: Path, frames, tmp_path: Path) -> None:
    settings = load_settings(None, [*BASE, *RAY])
    workspace = Workspace(tmp_path)
    roi.run(workspace, settings, frames)
    digests = _tile_digests(workspace)
    victim = sorted(digests)[5]
    # 1. a worker process dies on one tile: its batches go to a fresh actor, the stage finishes
    logs = tmp_path / "calls"
    manifest = masks.run(workspace, settings, generator=_generator(settings, logs, die_on=digests[victim]))
    assert (logs / "died").exists() and not manifest["failed"] and len(manifest["items"]) == 12
    calls = _calls(logs)
    assert calls[digests[victim]] == 1  # the victim once, after the death
    # every other tile once; a tile the dying worker finished but whose reply died with it is redone (at
    # least once, never journalled twice): under load that can be one more tile, never a stage's worth
    assert set(calls) == set(digests.values()) and all(n in (1, 2) for n in calls.values())
    assert sum(calls.values()) - len(calls) <= 1
    for tile_id in digests:
        name = f"masks/{tile_id}.json"
        assert (tmp_path / name).read_bytes() == (local_run / name).read_bytes()
    # 2. embed in-process, killed after its first group, resumed through Ray: the same bytes as in-process
    emb = tmp_path / "emb"
    emb_ws = Workspace(emb)
    for stage in ("roi", "masks"):
        shutil.copytree(local_run / stage, emb / stage)
    calls = {"n": 0}
    real_embed_tiles = embed.embed_tiles

    def die_after_one_group(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_embed_tiles(*args, **kwargs)

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embed, "embed_tiles", die_after_one_group)
        patch.setattr(embed, "GROUP_BATCHES", 1)
        torch.set_num_threads(1)
        try:
            with pytest.raises(KeyboardInterrupt):
                embed.run(emb_ws, load_settings(None, BASE))  # in-process, interrupted
        finally:
            torch.set_num_threads(threads)
    done_before = len(list((emb / "embed" / ".items").glob("*.json")))
    assert 0 < done_before < 12
    resumed = embed.run(emb_ws, load_settings(None, [*BASE, *RAY]))
    assert resumed["summary"]["crops_encoded_now"] < resumed["summary"]["masks"]
    for layer in (7, 8):
        assert read_features(emb_ws, layer).tobytes() == read_features(Workspace(local_run), layer).tobytes()


def test_embed_features_do_not_depend_on_batch_size_or_split(ray_cluster, local_run: Path, tmp_path: Path) -> None:
    """Same batch size and threads, tiles grouped differently: the same bytes. Other batch sizes and
    thread counts: equal within float32 rounding (kernel blocking follows the batch shape and the CPU's
    vector width: up to 1.5e-5 on features of magnitude ~3 measured on an AVX-512 CI machine, so 1e-4
    here), the same clusters."""
    reference = {layer: read_features(Workspace(local_run), layer) for layer in (7, 8)}
    index = read_index(Workspace(local_run)).to_pydict()
    threads = torch.get_num_threads()
    for batch_size, groups in [(4, 1), (1, 8), (7, 8), (32, 8)]:
        root = tmp_path / f"b{batch_size}g{groups}"
        for stage in ("roi", "masks"):
            shutil.copytree(local_run / stage, root / stage)
        workspace = Workspace(root)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(embed, "GROUP_BATCHES", groups)
            torch.set_num_threads(1 if batch_size == 4 else threads)
            try:
                embed.run(workspace, load_settings(None, [*BASE, f"embed.batch_size={batch_size}"]))
            finally:
                torch.set_num_threads(threads)
        assert read_index(workspace).to_pydict() == index
        for layer, expected in reference.items():
            features = read_features(workspace, layer)
            if batch_size == 4:
                assert features.tobytes() == expected.tobytes()
            np.testing.assert_allclose(features, expected, rtol=0, atol=1e-4)
            ari = adjusted_rand_score(
                cluster(expected, "kmeans", 4, seed=0).labels, cluster(features, "kmeans", 4, seed=0).labels
            )
            assert ari == 1.0, (batch_size, layer)


def test_predict_on_ray_equals_in_process_and_resumes(ray_cluster, tmp_path: Path) -> None:
    """predict on 2 Ray actors: the same label and confidence bytes, records and summary as in this process
    (one torch thread, like the 1-CPU actors); a corrupt input fails alone; a rerun redoes nothing."""
    from tests.test_train import tiny_segformer_dir

    from roadparse.io.labels import load_classes
    from roadparse.models.segmenters import build_segmenter, save_segmenter
    from roadparse.stages.predict import predict_files

    classes = load_classes(None)
    model = build_segmenter("segformer", str(tiny_segformer_dir(tmp_path, len(classes))), len(classes), pretrained=False)
    model_dir = save_segmenter(model, tmp_path / "model", {"class_names": list(classes.names),
                                                           "class_colors": [list(c) for c in classes.colors]})
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, (height, width) in enumerate([(70, 100), (64, 64), (90, 50)]):
        write_image(inputs / f"f{index}.png", road_image(height, width, seed=index))
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    options = ["predict.window=32", "predict.device=cpu", "predict.gsd_cm=1.0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = predict_files(model_dir, [inputs], tmp_path / "local", load_settings(None, options))
    finally:
        torch.set_num_threads(threads)
    remote = predict_files(model_dir, [inputs], tmp_path / "ray", load_settings(None, [*options, *RAY]))

    def without_timing(summary: dict) -> list[dict]:
        return [{k: v for k, v in image.items() if k != "seconds"} for image in summary["images"]]

    assert [Path(image["input"]).name for image in remote["images"]] == ["f0.png", "f1.png", "f2.png"]  # input order
    assert without_timing(remote) == without_timing(local)
    assert list(remote["failed"]) == list(local["failed"]) == [str(inputs / "broken.png")]
    assert "worker_environments" not in local
    # two identical workers: one environment, whatever each process had imported (workspace.BLAS_MODULES)
    assert len(remote["worker_environments"]) == 1 and remote["worker_environments"][0]["torch_threads"] == 1
    for name in ("f0_label.png", "f1_label.png", "f2_label.png", "f0_confidence.png", "f2_confidence.png", "areas.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert not (tmp_path / "ray" / "broken_label.png").exists()
    stamp = (tmp_path / "ray" / "f1_label.png").stat().st_mtime_ns
    again = predict_files(model_dir, [inputs], tmp_path / "ray", load_settings(None, [*options, *RAY]))
    assert (tmp_path / "ray" / "f1_label.png").stat().st_mtime_ns == stamp
    assert without_timing(again) == without_timing(remote) and list(again["failed"]) == list(remote["failed"])



def test_ray_workers_write_inside_the_drivers_lock_and_a_bad_model_changes_nothing(ray_cluster, frames, tmp_path: Path) -> None:
    """The driver holds the work directory's lock for the stage; the actors write items without taking it
    (one that tried would be refused, as another process): the stage finishes, the driver named as holder.
    The actors load their models before the stage claims its folder: a bad generator id leaves the masks as they were."""
    from roadparse.locking import holds, read_holder

    workspace = Workspace(tmp_path)
    roi.run(workspace, load_settings(None, BASE), frames)
    with workspace.lock(command="roadparse run config.yaml"):
        manifest = masks.run(workspace, load_settings(None, [*BASE, *RAY]))
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid() and holder.command == "roadparse run config.yaml"
    assert manifest["summary"]["tiles"] == 12 and not manifest["failed"]
    assert not holds(tmp_path)

    def snapshot() -> dict[Path, tuple[bytes, int]]:
        return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (tmp_path / "masks").rglob("*") if path.is_file()}

    before = snapshot()
    with pytest.raises(ValueError, match="nonexistent"):
        masks.run(workspace, load_settings(None, [*BASE, *RAY, "masks.generator=/nonexistent/sam-vit-base"]))
    assert snapshot() == before
