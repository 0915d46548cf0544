"""``selftrain`` under DDP: two CPU processes (gloo), as ``torchrun --nproc_per_node 2`` runs it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from tests.test_train import make_workspace, small_settings, tiny_segformer_dir

from roadparse.io.labels import read_label_png
from roadparse.models.segmenters import load_segmenter


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(rank: int, world_size: int, port: int, root: str, backbone: str, gt_dir: str) -> None:
    """One torchrun-like process: the environment torchrun sets, then the stage as the CLI runs it."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from roadparse.stages import selftrain
    from roadparse.workspace import Workspace

    settings = small_settings(Path(backbone), iterations=4, rounds=1, checkpoint_every=2)
    selftrain.run(Workspace(root), settings, dev_labels=Path(gt_dir))
    joined = torch.distributed.is_initialized() and torch.distributed.get_world_size()
    (Path(root) / f"rank{rank}.json").write_text(json.dumps({"world_size": joined, "backend": torch.distributed.get_backend()}))
    torch.distributed.destroy_process_group()


def test_selftrain_with_two_gloo_processes(tmp_path: Path) -> None:
    workspace, gt_dir = make_workspace(tmp_path, n_tiles=4)
    backbone = tiny_segformer_dir(tmp_path)
    mp.spawn(_rank, args=(2, _free_port(), str(workspace.root), str(backbone), str(gt_dir)), nprocs=2, join=True)
    manifest = json.loads((workspace.root / "selftrain" / "manifest.json").read_text())
    assert manifest["summary"]["rounds_run"] == 1
    round_dir = workspace.root / "selftrain" / "round_1"
    metrics = json.loads((round_dir / "metrics.json").read_text())
    assert metrics["training"]["iterations"] == 4
    # each rank relabelled its share of the tiles; together every tile
    assert sorted(path.stem for path in (round_dir / "labels").glob("*.png")) == [f"f{i}_t0" for i in range(4)]
    assert read_label_png(round_dir / "labels" / "f3_t0.png").shape == (64, 64)
    for rank in (0, 1):  # both processes trained in one gloo group
        assert json.loads((workspace.root / f"rank{rank}.json").read_text()) == {"world_size": 2, "backend": "gloo"}
    model, record = load_segmenter(round_dir / "model")
    assert record["class_names"][0] == "road"
