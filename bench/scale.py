"""Benchmark: the data-parallel stages in-process vs on Ray with 1 and 2 workers (issue #15).

On a copy of a work directory whose ``roi`` and ``masks`` stages are finished (e.g. a
``roadparse demo`` run, offline profile), times:

* ``masks`` (the offline Felzenszwalb generator) and ``embed`` (EfficientNet-Lite0, stage 7,
  crops 224) per mode: tiles/s and crops/s, and whether the outputs are the same bytes;
* Ray's overhead per item: a no-op task through :class:`RayExecutor` vs in-process;
* with ``--sam``: a random-weight SAM ViT-B (16x16 points) on ``--sam-tiles`` tiles,
  in-process vs 2 CPU actors.

Ray is started here with ``num_cpus`` = the machine's cores. Note the machine's load
(``uptime``) next to the numbers: other processes share the cores.

    python bench/scale.py --workdir demo-out/run --frames 2
    python bench/scale.py --workdir demo-out/run --frames 2 --sam --sam-tiles 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from roadparse.artifacts import list_tiles, read_features
from roadparse.config import load_settings
from roadparse.executor import InProcessExecutor, RayExecutor, Ready
from roadparse.stages import embed, masks
from roadparse.workspace import Workspace

MODES = {"in-process": [], "ray 1 worker": ["run.executor=ray", "run.ray_workers=1"],
         "ray 2 workers": ["run.executor=ray", "run.ray_workers=2"]}
PROFILE = ["masks.generator=felzenszwalb", "embed.encoder=efficientnet-lite0", "embed.layers=[7]",
           "embed.mask_background=true", "embed.device=cpu", "masks.device=cpu"]


def copy_run(source: Path, target: Path, frames: int | None, stages: tuple[str, ...]) -> Workspace:
    """Copies the finished stages of ``source``, keeping the first ``frames`` frames' tiles only."""
    for stage in stages:
        shutil.copytree(source / stage, target / stage)
    if frames is not None:
        manifest_path = target / "roi" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["items"] = dict(list(manifest["items"].items())[:frames])
        manifest_path.write_text(json.dumps(manifest))
        if "masks" in stages:
            kept = {tile["id"] for record in manifest["items"].values() for tile in record["tiles"]}
            masks_path = target / "masks" / "manifest.json"
            masks_manifest = json.loads(masks_path.read_text())
            masks_manifest["items"] = {key: value for key, value in masks_manifest["items"].items() if key in kept}
            masks_manifest["inputs"] = {"roi": manifest["fingerprint"]}
            masks_path.write_text(json.dumps(masks_manifest))
    return Workspace(target)


def time_stage(name: str, source: Path, scratch: Path, overrides: list[str], frames: int | None) -> dict:
    """Runs ``masks`` or ``embed`` on a fresh copy; returns seconds, items and an output digest."""
    stages = ("roi",) if name == "masks" else ("roi", "masks")
    workspace = copy_run(source, scratch, frames, stages)
    settings = load_settings(None, [*PROFILE, *overrides])
    start = time.perf_counter()
    manifest = (masks if name == "masks" else embed).run(workspace, settings)
    seconds = time.perf_counter() - start
    if name == "masks":
        digest = b"".join((scratch / "masks" / f"{tile.id}.json").read_bytes() for tile in list_tiles(workspace))
        items = manifest["summary"]["tiles"]
    else:
        digest = read_features(workspace, 7).tobytes()
        items = manifest["summary"]["masks"]
    return {"seconds": seconds, "items": items, "digest": hash(digest)}


def overhead_per_item(n_items: int = 200) -> dict[str, float]:
    """Returns ms per item of a no-op task: in-process, and through Ray with 1 and 2 workers."""
    task = Ready(lambda batch: [None for _ in batch])
    batches = [[i] for i in range(n_items)]
    out = {}
    for label, executor in [("in-process", InProcessExecutor()), ("ray 1 worker", RayExecutor(workers=1)),
                            ("ray 2 workers", RayExecutor(workers=2))]:
        list(executor.map(task, batches[:4]))  # actors started and loaded
        start = time.perf_counter()
        list(executor.map(task, batches))
        out[label] = (time.perf_counter() - start) / n_items * 1000
        executor.close()
    return out


def sam_tiles(source: Path, scratch: Path, tiles: int) -> dict[str, float]:
    """Returns seconds per tile of a random-weight SAM ViT-B (16x16 points) in-process vs 2 CPU actors."""
    import torch
    from segment_anything import sam_model_registry

    from roadparse.models.sam.convert import official_to_hf_state_dict, sam_config_for_state_dict

    torch.manual_seed(0)
    state = sam_model_registry["vit_b"](checkpoint=None).state_dict()
    from transformers import SamModel

    model = SamModel(sam_config_for_state_dict(state)).eval()
    model.load_state_dict(official_to_hf_state_dict(state), strict=False)
    folder = scratch / "sam-vit-b-random"
    model.save_pretrained(folder)
    frames_needed = 1
    out = {}
    for label, extra in [("in-process", []), ("ray 2 CPU actors", ["run.executor=ray", "run.ray_workers=2"])]:
        target = scratch / label.replace(" ", "-")
        workspace = copy_run(source, target, frames_needed, ("roi",))
        manifest_path = target / "roi" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        record = next(iter(manifest["items"].values()))
        record["tiles"] = record["tiles"][:tiles]
        manifest["items"] = {next(iter(manifest["items"])): record}
        manifest_path.write_text(json.dumps(manifest))
        settings = load_settings(None, [f"masks.generator={folder}", "masks.device=cpu", *extra])
        start = time.perf_counter()
        masks.run(workspace, settings)
        out[label] = (time.perf_counter() - start) / len(list_tiles(workspace))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a run with roi and masks finished (e.g. demo-out/run)")
    parser.add_argument("--frames", type=int, default=None, help="use the first N frames' tiles only")
    parser.add_argument("--sam", action="store_true", help="also time a random-weight SAM ViT-B")
    parser.add_argument("--sam-tiles", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"load average before: {os.getloadavg()}")
    scratch = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        print("| stage | mode | items | seconds | items/s | same output as in-process |")
        print("|---|---|---|---|---|---|")
        for stage, unit in (("masks", "tiles"), ("embed", "crops")):
            reference = None
            for mode, overrides in MODES.items():
                result = time_stage(stage, args.workdir, scratch / f"{stage}-{mode.replace(' ', '-')}", overrides, args.frames)
                reference = reference if reference is not None else result["digest"]
                rate = result["items"] / result["seconds"]
                print(f"| {stage} | {mode} | {result['items']} {unit} | {result['seconds']:.1f} | {rate:.2f} | "
                      f"{'yes' if result['digest'] == reference else 'no'} |", flush=True)
        print("\nRay overhead, no-op task, ms per item:",
              {key: round(value, 2) for key, value in overhead_per_item().items()})
        if args.sam:
            print("SAM ViT-B (random weights), seconds per tile:",
                  {key: round(value, 1) for key, value in sam_tiles(args.workdir, scratch, args.sam_tiles).items()})
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
