"""Benchmark: the offline profile's pseudo-labels at several ground sampling distances, working GSD, overlap.

The same synthetic scenes (the demo's seed and ground extent, 6 x 4 m per frame) are
rendered at 0.25, 0.5, 1 and 2 cm/px (``roadparse synth --gsd-cm``); each is run through
roi -> masks -> embed -> cluster -> pseudolabel with the demo profile and its physical
defaults (no hand tuning), the merge map suggested by majority vote on the dev labels, and
the pseudo-labels scored on the dev split (mIoU %, areas summed). Rows:

- ``physical``: the defaults in cm² / m (``masks.min_mask_area_cm2``, ``roi.tile_size_m`` ...);
- ``pixels``: the old pixel defaults pinned (3000 px, Felzenszwalb scale 200 / sigma 0.5, 800 px tiles);
- ``target``: physical defaults with ``roi.target_gsd_cm: 0.25`` (frames resampled to the paper's GSD);
- ``shift``: physical defaults with the old ``roi.edge_rule: shift`` (the demo before the grow rule).

The clusters are named by majority vote on two training frames (``--naming train``, as the
demo), on the same share of the training tiles drawn across all training frames (``--naming
tiles``, ``run.naming_share``) or on the dev frames (``--naming dev``, the demo before the
seventh round). Also printed per
row: the same pseudo-labels scored on the remaining frames ("held-out": neither dev nor naming), the masks' ceiling on the dev split (each mask painted with
its majority class: what any merge map could reach with these masks), masks, the share of ground-truth objects (connected components of one
    parser.add_argument("--gsds", default="0.25,0.5,1,2,3")
    parser.add_argument("--rows", default="physical")
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from roadparse.artifacts import (
    gallery_path,
    list_tiles,
    mask_key,
    pseudo_label_dir,
    read_assignments,
    read_tile_masks,
)
from roadparse.config import Settings
from roadparse.demo import NAMINGS, demo_settings, naming_overrides
from roadparse.dev_split import (
    cluster_ceiling,
    dev_tiles,
    held_out_tiles,
    mask_ceiling,
    score_label_dir,
)
from roadparse.io import rle
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png
from roadparse.merge import class_table
from roadparse.pipeline import PipelineResult, run_until_merge, suggested_merge_map
from roadparse.stages import pseudolabel
from roadparse.synth import generate_dataset
from roadparse.workspace import Workspace

PIXEL_DEFAULTS = ["masks.min_mask_area=3000", "masks.offline_scale=200", "masks.offline_sigma=0.5", "roi.tile_size=800"]
GROW = "roi.edge_rule=grow"  # the default tiling; the demo profile pins the old shift rule
ROWS = {
    "physical": [GROW],
    "pixels": [GROW, *PIXEL_DEFAULTS],
    "target": [GROW, "roi.target_gsd_cm=0.25"],  # resampled to the paper's GSD before tiling
    "shift": ["roi.edge_rule=shift"],  # the old tiling (tiles shifted inward at box ends)
}


def _mask_classes(workspace: Workspace, settings: Settings) -> dict[tuple[str, str], int]:
    from roadparse.artifacts import read_merge_map

    classes = load_classes(settings.classes)
    n_clusters = settings.cluster.n_clusters
    merge_map = read_merge_map(workspace.root / settings.pseudolabel.merge_map, n_clusters)
    row_classes = pseudolabel.mask_class_ids(workspace, settings, merge_map, class_table(merge_map, n_clusters, classes))
    table = read_assignments(workspace)
    pairs = zip(table.column("tile_id").to_pylist(), table.column("mask_id").to_pylist(), row_classes.tolist(), strict=True)
    return {mask_key(t, m): int(c) for t, m, c in pairs}


def split_share(workspace: Workspace, settings: Settings, labels_dir: Path, min_area: int) -> float:
    """Returns the share of ground-truth objects whose pixels fall in >= 2 masks labelled with their class."""
    classes_of = _mask_classes(workspace, settings)
    by_frame: dict[str, list] = {}
    for tile in list_tiles(workspace):
        by_frame.setdefault(tile.frame, []).append(tile)
    split = total = 0
    for frame, tiles in by_frame.items():
        truth = read_label_png(labels_dir / f"{Path(frame).stem}.png")
        unit_map = np.full(truth.shape, -1, np.int64)
        class_map = np.full(truth.shape, IGNORE_INDEX, np.int64)
        units: dict[tuple[str, str], int] = {}
        for tile in tiles:
            x, y = tile.offset
            width, height = tile.valid
            if tile.scale != 1:
                return float("nan")  # split counting works on unresampled tiles only
            for record in sorted(read_tile_masks(workspace, tile.id), key=lambda r: -r["area"]):
                key = mask_key(tile.id, record["id"])
                label = classes_of.get(key, IGNORE_INDEX)
                mask = rle.decode(record["rle"])[:height, :width]
                window = (slice(y, y + height), slice(x, x + width))
                unit_map[window][mask] = units.setdefault(key, len(units))
                class_map[window][mask] = label
        for class_id in np.unique(truth):
            if class_id == IGNORE_INDEX:
                continue
            components, count = ndimage.label(truth == class_id)
            for index in range(1, count + 1):
                inside = components == index
                if inside.sum() < min_area:
                    continue
                ids = unit_map[inside & (class_map == class_id)]
                total += 1
                split += len(np.unique(ids[ids >= 0])) >= 2
    return split / total if total else 0.0


def run_case(data: Path, out: Path, split: dict, overrides: list[str], gsd: float, naming: str = "train") -> dict:
    """Returns the scores of one (data set, settings) case."""
    settings = demo_settings(out, data, split["dev"], [f"roi.gsd_cm={gsd}", *overrides, *naming_overrides(split, naming)])
    workspace = Workspace(settings.run.workdir)
    workspace.write_settings("")
    result = PipelineResult(workspace.root)
    start = time.perf_counter()
    run_until_merge(workspace, settings, sorted((data / "frames").iterdir()), result)
    suggested = suggested_merge_map(workspace, settings)
    shutil.copyfile(suggested, workspace.root / settings.pseudolabel.merge_map)  # type: ignore[arg-type]
    pseudolabel.run(workspace, settings)
    seconds = time.perf_counter() - start
    names = load_classes(settings.classes).names
    dev = dev_tiles(workspace, settings.run)
    scores = score_label_dir(pseudo_label_dir(workspace), dev, data / "labels", names)["scores"]
    masks_summary = result.manifests["masks"]["summary"]
    # ground under the tiles' valid parts (each pixel once with the default grow tiles)
    tiled_m2 = sum(t.valid[0] * t.valid[1] * ((t.gsd_cm or gsd) / 100) ** 2 for t in list_tiles(workspace))
    min_area = next(iter(masks_summary["min_mask_area_px"].values()))
    ceiling = mask_ceiling(workspace, dev, data / "labels", names)["scores"]
    # the clusters named by every frame's labels: the best any merge map could do with these clusters
    clusters = cluster_ceiling(workspace, dev, list_tiles(workspace), data / "labels", load_classes(settings.classes))["scores"]
    held_out = held_out_tiles(workspace, settings.run)  # frames neither scored as dev nor naming
    held_out_scores = score_label_dir(pseudo_label_dir(workspace), held_out, data / "labels", names)["scores"]
    return {
        "miou": scores["miou"],
        # the classes the suggested map names no cluster as (merge.unnamed_classes)
        "unnamed": [line.split(":")[0] for line in json.loads((gallery_path(workspace).parent / "warnings.json").read_text())],
        "ceiling": ceiling["miou"],
        "cluster_ceiling": clusters["miou"],
        "cluster_ceiling_per_class": {name: clusters["iou"][name] for name in names},
        "held_out": held_out_scores["miou"],
        "held_out_per_class": {name: held_out_scores["iou"][name] for name in names},
        "ceiling_per_class": {name: ceiling["iou"][name] for name in names},
        "per_class": {name: scores["iou"][name] for name in names},
        "masks": masks_summary["masks"],
        "embedded": result.manifests["embed"]["summary"]["masks"],
        "split": split_share(workspace, settings, data / "labels", max(min_area, 1)),
        "processed": result.manifests["roi"]["summary"]["max_processed_share"],
        "tiles": result.manifests["roi"]["summary"]["tiles"],
        "tiled_m2": tiled_m2,
        "masks_per_m2": masks_summary["masks"] / tiled_m2,
        "embed_s_per_m2": result.seconds["embed"] / tiled_m2,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--gsds", default="0.25,0.5,1,2,3")
    parser.add_argument("--rows", default="physical")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary folder (kept)")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic scenes' seed")
    parser.add_argument("--style", default="highway", choices=["highway", "urban"], help="the synthetic family")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra setting for every row (repeatable)")
    parser.add_argument("--naming", choices=NAMINGS, default="train",
                        help="whose labels name the clusters: two training frames (as the demo; default), the same share of "
                        "the training tiles drawn across all training frames, or the dev frames")
    args = parser.parse_args()
    gsds = [float(v) for v in args.gsds.split(",")]
    rows = args.rows.split(",")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-gsd-"))
    results: dict[str, dict[str, dict]] = {}
    for gsd in gsds:
        data = root / f"data_{args.style}_{gsd:g}" if args.seed == 0 else root / f"data_{args.style}_{gsd:g}_seed{args.seed}"
        if not (data / "split.json").exists():
            width, height = round(2400 * 0.25 / gsd), round(1600 * 0.25 / gsd)
            generate_dataset(data, n_frames=args.frames, width=width, height=height, seed=args.seed, gsd_cm=gsd, progress=False,
                             style=args.style)
        split = json.loads((data / "split.json").read_text())
        for row in rows:
            try:
                result = run_case(data, root / (f"{args.style}_{row}_{gsd:g}" + (f"_seed{args.seed}" if args.seed else "")), split, [*ROWS[row], *args.overrides], gsd, args.naming)
            except ValueError as exc:  # e.g. too few masks left to make k clusters
                results.setdefault(row, {})[f"{gsd:g}"] = {"failed": str(exc).splitlines()[0]}
                print(f"{row:9s} {gsd:5g} cm/px: failed: {exc}", flush=True)
                continue
            results.setdefault(row, {})[f"{gsd:g}"] = result
            print(f"{row:9s} {gsd:5g} cm/px: mIoU {result['miou']:6.2f}  held-out {result['held_out']:6.2f}  clusters' ceiling {result['cluster_ceiling']:6.2f}  masks' ceiling {result['ceiling']:6.2f}  masks {result['masks']:5d}  "
                  f"{result['masks_per_m2']:.2f} masks/m²  embed {result['embed_s_per_m2']:.3f} s/m²  split {100 * result['split']:5.1f} %  tiled {100 * result['processed']:5.1f} %  {result['seconds']:.0f} s",
                  flush=True)
    print()
    print("| settings | " + " | ".join(f"{g:g} cm/px" for g in gsds) + " |")
    print("|---|" + "---|" * len(gsds))
    reference = results.get("physical", {}).get(f"{gsds[0]:g}", {}).get("miou")
    for row in rows:
        cells = []
        for gsd in gsds:
            r = results[row][f"{gsd:g}"]
            if "failed" in r:
                cells.append(f"fails: {r['failed']}")
                continue
            delta = f" ({r['miou'] - reference:+.2f})" if reference is not None else ""
            cells.append(f"{r['miou']:.2f}{delta}; held-out {r['held_out']:.2f}; clusters' ceiling {r['cluster_ceiling']:.2f}; masks' ceiling {r['ceiling']:.2f}; {r['masks']} masks; split {100 * r['split']:.1f} %; tiled {100 * r['processed']:.0f} %")
        print(f"| {row} | " + " | ".join(cells) + " |")
    print()
    print("| settings | GSD cm/px | masks per m² | embed s per m² | pseudo-label mIoU % (dev) | held-out | masks' ceiling |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for gsd in gsds:
            r = results[row][f"{gsd:g}"]
            if "failed" not in r:
                print(f"| {row} | {gsd:g} | {r['masks_per_m2']:.2f} | {r['embed_s_per_m2']:.3f} | {r['miou']:.2f} | {r['held_out']:.2f} | {r['ceiling']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
