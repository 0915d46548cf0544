"""Self-training on a synthetic family with the unchanged demo profile: pseudo-labels, every round, per class.

Renders a demo-sized set of a family (default: 8 frames of 2400x1600, 2 in the dev split), runs
the whole demo profile (``roadparse/data/demo.yaml``) with the merge map suggested by majority
vote on the labels of two training frames, as ``roadparse demo`` does (``--naming``), and prints the dev table of the pseudo-labels
and of every training round, the round the run hands on and its verdict. Settings come from the
profile (``--set`` overrides for experiments only): the point is to score a family the profile
was not tuned on. Run: ``python bench/selftrain_families.py --style urban --out /tmp/urban-selftrain``.
``--train-on truth`` trains the rounds on the ground truth instead (a diagnostic: what the
budget reaches with perfect labels).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from roadparse.artifacts import list_tiles, pseudo_label_dir, tile_ground_truth
from roadparse.config import Settings, dump_settings
from roadparse.demo import NAMINGS, demo_settings, naming_overrides
from roadparse.dev_split import cluster_ceiling, dev_tiles
from roadparse.io.images import list_images
from roadparse.io.labels import IGNORE_INDEX, load_classes, write_label_png
from roadparse.pipeline import PipelineResult, finish_pipeline, run_until_merge, suggested_merge_map
from roadparse.stages import pseudolabel
from roadparse.synth import generate_dataset
from roadparse.workspace import Workspace


def _row(title: str, scores: dict, names: tuple[str, ...]) -> str:
    cells = " | ".join(f"{scores['iou'][n]:.2f}" if scores["iou"].get(n) is not None else "-" for n in names)
    return f"| {title} | {cells} | {scores['miou']:.2f} | {scores['pixel_accuracy']:.2f} |"


def _write_truth(workspace: Workspace, settings: Settings, labels: Path) -> None:
    """Overwrites the pseudo-labels with each tile's ground truth; the dev tiles' with unlabelled (255)."""
    classes = load_classes(settings.classes)
    dev = {tile.id for tile in dev_tiles(workspace, settings.run)}
    for tile in list_tiles(workspace):
        truth = tile_ground_truth(tile, labels)
        write_label_png(pseudo_label_dir(workspace) / f"{tile.id}.png",
                        np.full_like(truth, IGNORE_INDEX) if tile.id in dev else truth, classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=["highway", "urban"], default="urban")
    parser.add_argument("--out", type=Path, required=True, help="work folder (data/ and run/)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gsd-cm", type=float, default=None,
                        help="render the frames at this GSD (default: the family's) and set roi.gsd_cm to it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value (experiments)")
    parser.add_argument("--train-on", choices=["pseudo", "truth"], default="pseudo",
                        help="truth: a diagnostic, the rounds train on the ground truth of the non-dev tiles (dev "
                        "tiles unlabelled) instead of the pseudo-labels: what the training budget reaches with "
                        "perfect labels (round 0 then scores 0 on dev)")
    parser.add_argument("--naming", choices=NAMINGS, default="train",
                        help="whose labels name the clusters: two training frames (as the demo; default), the same share of "
                        "the training tiles drawn across all training frames, or the dev frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    data = args.out / "data"
    started = time.perf_counter()
    if not (data / "split.json").exists():
        generate_dataset(data, n_frames=args.frames, width=args.width, height=args.height, seed=args.seed,
                         style=args.style, **({} if args.gsd_cm is None else {"gsd_cm": args.gsd_cm}))
    split = json.loads((data / "split.json").read_text())
    gsd = [] if args.gsd_cm is None else [f"roi.gsd_cm={args.gsd_cm}"]
    settings = demo_settings(args.out, data, split["dev"], [*gsd, *args.overrides, *naming_overrides(split, args.naming)])
    workspace = Workspace(settings.run.workdir)
    workspace.write_settings(dump_settings(settings))
    result = PipelineResult(workspace.root)
    run_until_merge(workspace, settings, list_images(data / "frames"), result)
    suggested = suggested_merge_map(workspace, settings)
    if suggested is None:
        raise SystemExit("no merge map was suggested (no dev labels?)")
    shutil.copyfile(suggested, workspace.root / settings.pseudolabel.merge_map)
    if args.train_on == "truth":
        pseudolabel.run(workspace, settings)  # finished here, so finish_pipeline keeps what is written next
        _write_truth(workspace, settings, data / "labels")
    finish_pipeline(workspace, settings, result, announce=print)
    names = load_classes(settings.classes).names
    print(f"| labels ({args.style}, dev) | {' | '.join(names)} | mIoU | PA |")
    print("|---" * (len(names) + 3) + "|")
    for title, metrics in result.metrics.items():
        print(_row(title, metrics["scores"], names))
    classes = load_classes(settings.classes)
    best_map = cluster_ceiling(workspace, dev_tiles(workspace, settings.run), list_tiles(workspace), data / "labels", classes)
    print(_row("*clusters named by every frame's labels*", best_map["scores"], names))
    summary = result.manifests["selftrain"]["summary"]
    print(f"best_round {summary['best_round']}; stopped by: {summary['stopped_by']}")
    print(summary["verdict"])
    print(f"stage seconds: {result.seconds}; total {time.perf_counter() - started:.0f} s")
    (args.out / "selftrain_metrics.json").write_text(
        json.dumps({"metrics": {k: v["scores"] for k, v in result.metrics.items()}, "cluster_ceiling": best_map["scores"], "train": summary,
                    "seconds": result.seconds}, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
