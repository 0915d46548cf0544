"""Pseudo-label quality of the unchanged demo profile on each synthetic family.

Renders a demo-sized set of a family (default: 8 frames of 2400x1600, 2 in the dev split),
runs the demo profile (``roadparse/data/demo.yaml``: offline roi, Felzenszwalb masks,
EfficientNet-Lite0, spectral k = 20 with colour statistics) up to the pseudo-labels, with the
merge map suggested by majority vote on the dev labels as the demo does, and prints IoU per
class, mIoU and PA of the pseudo-labels on the dev split. No setting is changed: the point is
to score the profile on a family it was never tuned on. Run:
``python bench/synth_families.py --style urban --out /tmp/urban-bench``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from roadparse.artifacts import pseudo_label_dir
from roadparse.config import dump_settings
from roadparse.demo import demo_settings, naming_frames_of
from roadparse.dev_split import dev_tiles, held_out_tiles, mask_ceiling, score_label_dir
from roadparse.io.images import list_images
from roadparse.io.labels import load_classes
from roadparse.pipeline import PipelineResult, run_until_merge, suggested_merge_map
from roadparse.synth import generate_dataset
from roadparse.workspace import Workspace


def _row(title: str, scores: dict, names: tuple[str, ...]) -> str:
    per_class = scores["iou"]
    cells = " | ".join(f"{per_class[name]:.2f}" if per_class.get(name) is not None else "-" for name in names)
    return f"| {title} | {cells} | {scores['miou']:.2f} | {scores['pixel_accuracy']:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=["highway", "urban"], default="urban")
    parser.add_argument("--out", type=Path, required=True, help="work folder (data/ and run/)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--gsd-cm", type=float, default=None, help="default: the style's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naming", choices=["train", "dev"], default="train",
                        help="whose labels name the clusters: two training frames (as the demo; default) or the dev frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    data = args.out / "data"
    started = time.perf_counter()
    if not (data / "split.json").exists():
        generate_dataset(data, n_frames=args.frames, width=args.width, height=args.height, seed=args.seed,
                         gsd_cm=args.gsd_cm, style=args.style)
    split = json.loads((data / "split.json").read_text())
    naming_frames = naming_frames_of(split) if args.naming == "train" else None
    settings = demo_settings(args.out, data, split["dev"], naming_frames=naming_frames)
    workspace = Workspace(settings.run.workdir)
    workspace.write_settings(dump_settings(settings))
    result = PipelineResult(workspace.root)
    run_until_merge(workspace, settings, list_images(data / "frames"), result)
    suggested = suggested_merge_map(workspace, settings)
    if suggested is None:
        raise SystemExit("no merge map was suggested (no dev labels?)")
    shutil.copyfile(suggested, workspace.root / settings.pseudolabel.merge_map)
    from roadparse.stages import pseudolabel

    pseudolabel.run(workspace, settings)
    names = load_classes(settings.classes).names
    tiles = dev_tiles(workspace, settings.run)
    metrics = score_label_dir(pseudo_label_dir(workspace), tiles, settings.run.dev_labels, names)
    ceiling = mask_ceiling(workspace, tiles, settings.run.dev_labels, names)
    held_out = held_out_tiles(workspace, settings.run)  # frames neither scored as dev nor naming
    held_out_metrics = score_label_dir(pseudo_label_dir(workspace), held_out, settings.run.dev_labels, names)
    print(json.dumps(metrics["scores"], indent=1))
    print(f"| labels | {' | '.join(names)} | mIoU | PA |")
    print(_row(f"pseudo-labels ({args.style}, {len(tiles)} dev tiles)", metrics["scores"], names))
    print(_row(f"same pseudo-labels on the {len(held_out)} held-out tiles", held_out_metrics["scores"], names))
    print(_row("each mask its majority class (the masks' ceiling, dev tiles)", ceiling["scores"], names))
    print(f"stage seconds: {result.seconds}; total {time.perf_counter() - started:.0f} s")
    (args.out / "pseudolabel_metrics.json").write_text(json.dumps(metrics, indent=1, default=str))


if __name__ == "__main__":
    main()
