"""Benchmark: the offline profile on two real drone frames (NITRDrone samples) up to pseudo-labels.

``../shared/data/nitrdrone/`` holds a 4096x2160 nadir and a 4000x3000 oblique frame (no EXIF)
with road / occluded road / vegetation labels (MIT licence, attribution in its README). They
are a check on real pixels, never data to choose settings on: the run starts with ``roadparse
init --profile offline`` (without EXIF it assumes the paper's 0.25 cm/px and marks it CHECK;
``--set roi.gsd_cm=1`` is what a user who reads the GSD off the road's width would answer), and
takes the merge map suggested by majority vote on the frames' own labels (both frames name the
clusters and are scored, so the figure is flattering: it is what a person naming the gallery
from these labels could reach). Road IoU is taken over whole frames: frame pixels no tile
covers count as unlabelled, so a road the ROI missed is a miss.

Prints per frame road IoU %, occluded-road and vegetation IoU, and the run's tiles, masks and
seconds per megapixel (roi → pseudolabel). ``--overlay`` writes a small PNG of the nadir
frame with its pseudo-labels. Run: ``python bench/nitrdrone.py [--keep DIR] [--set roi.gsd_cm=1] [--overlay x.png]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

import roadparse
from roadparse.artifacts import list_tiles, pseudo_label_dir
from roadparse.config import Settings, load_settings
from roadparse.io.images import image_size, list_images, read_image
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png
from roadparse.metrics import confusion_matrix, scores
from roadparse.pipeline import PipelineResult, run_until_merge, suggested_merge_map
from roadparse.stages import pseudolabel
from roadparse.workspace import Workspace

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nitrdrone"
CLASSES = {"classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "road", "color": [128, 64, 128]},
                       {"name": "occluded_road", "color": [250, 170, 30]}, {"name": "vegetation", "color": [107, 142, 35]}]}
"""The labels' ids (README: 0 background, 1 road, 2 occluded road, 3 vegetation) as a classes file."""


def write_config(frames: Path, out: Path) -> tuple[Path, str]:
    """Writes the run's config with ``roadparse init FRAMES --out OUT --profile offline``; returns it and what init chose."""
    report = roadparse.init(frames, out=out, profile="offline", overwrite=True)
    chosen = ", ".join(f"{c.key}={c.value}" + (" (CHECK)" if c.loud else "") for c in report.choices)
    return out, f"roadparse init --profile offline: GSD {report.gsd_cm:g} cm/px from {report.gsd_source}; {chosen or 'nothing besides the profile'}"


def run_settings(config: Path, data: Path, work: Path, overrides: list[str]) -> Settings:
    """Returns the config pointed at the frames, their labels as the dev and naming set, and a classes file."""
    classes = work / "classes.yaml"
    classes.write_text(yaml.safe_dump(CLASSES))
    stems = [path.stem for path in list_images(data / "images")]
    return load_settings(config, [
        f"run.frames={data / 'images'}", f"run.workdir={work / 'run'}", f"classes={classes}",
        f"run.dev_labels={data / 'labels'}", f"run.dev_frames={json.dumps(stems)}", f"run.naming_frames={json.dumps(stems)}", *overrides,
    ])


def frame_labels(workspace: Workspace, frame: Path) -> np.ndarray:
    """Returns the (H, W) uint8 pseudo-labels of a whole frame pasted from its tiles (255 where no tile is)."""
    width, height = image_size(frame)
    canvas = np.full((height, width), IGNORE_INDEX, np.uint8)
    for tile in list_tiles(workspace):
        if Path(tile.frame).stem != frame.stem:
            continue
        label = read_label_png(pseudo_label_dir(workspace) / f"{tile.id}.png")[: tile.valid[1], : tile.valid[0]]
        x0, y0, x1, y1 = tile.frame_box()
        x1, y1 = min(x1, width), min(y1, height)
        if tile.scale != 1:
            label = cv2.resize(label, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        canvas[y0:y1, x0:x1] = label[: y1 - y0, : x1 - x0]
    return canvas


def overlay_png(image: np.ndarray, labels: np.ndarray, path: Path, long_side: int = 960) -> None:
    """Writes the image with its road pixels (pseudo-labels) tinted, side by side with the labels' colours, as a small PNG."""
    classes = load_classes_from(CLASSES)
    colours = classes.colorize(labels)
    tinted = np.where((labels == 1)[..., None], (0.5 * image + 0.5 * colours).astype(np.uint8), image)
    both = np.concatenate([tinted, colours], axis=1)
    factor = long_side / max(both.shape[:2])
    small = cv2.resize(both, (round(both.shape[1] * factor), round(both.shape[0] * factor)), interpolation=cv2.INTER_AREA)
    from PIL import Image

    Image.fromarray(small).quantize(64).save(path, optimize=True)


def load_classes_from(data: dict[str, Any]) -> Any:
    """Returns the ClassSet of a classes mapping (written to a temporary file)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "classes.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_classes(path)


def run(data: Path, work: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Returns the figures of one run of the offline profile on the frames in ``data`` (work in ``work``).

    ``overrides``: settings given on top of what ``roadparse init`` wrote (e.g. ``roi.gsd_cm=1`` where
    init could only assume the paper's 0.25 cm/px and marked it CHECK).
    """
    config, how = write_config(data / "images", work / "roadparse.yaml")
    settings = run_settings(config, data, work, list(overrides or []))
    workspace = Workspace(settings.run.workdir)
    workspace.write_settings(config.read_text())
    result = PipelineResult(workspace.root)
    start = time.perf_counter()
    run_until_merge(workspace, settings, list_images(data / "images"), result)
    suggested = suggested_merge_map(workspace, settings)
    if suggested is None:
        raise ValueError("the cluster stage suggested no merge map (are the labels found?)")
    shutil.copyfile(suggested, workspace.root / settings.pseudolabel.merge_map)
    pseudolabel.run(workspace, settings)
    seconds = time.perf_counter() - start
    names = tuple(c["name"] for c in CLASSES["classes"])
    frames: dict[str, Any] = {}
    total = np.zeros((len(names) + 1, len(names)), np.int64)
    megapixels = 0.0
    for frame in list_images(data / "images"):
        predicted = frame_labels(workspace, frame)
        confusion = confusion_matrix(predicted, read_label_png(data / "labels" / f"{frame.stem}.png"), len(names), len(names))
        total += confusion
        frames[frame.stem] = scores(confusion, names)["iou"]
        megapixels += predicted.size / 1e6
    roi_summary = result.manifests["roi"]["summary"]
    return {
        "config": how + (f"; then {', '.join(overrides)}" if overrides else ""),
        "gsd_cm": sorted({tile.gsd_cm for tile in list_tiles(workspace)}),
        "gsd_sources": roi_summary["gsd_sources"],
        "frames": frames,
        "all": scores(total, names)["iou"],
        "tiles": roi_summary["tiles"],
        "masks": result.manifests["masks"]["summary"]["masks"],
        "seconds": seconds,
        "stage_seconds": result.seconds,
        "megapixels": megapixels,
        "seconds_per_megapixel": seconds / megapixels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the nitrdrone folder (images/, labels/)")
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary folder (kept)")
    parser.add_argument("--overlay", type=Path, help="write the nadir frame's pseudo-labels as a small PNG here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting on top of init's (repeatable), e.g. roi.gsd_cm=1: the GSD a user reads off the road's width")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-nitrdrone-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = run(args.data, work, args.overrides)
    print(f"config: {figures['config']}; GSD {figures['gsd_cm']} cm/px ({figures['gsd_sources']})")
    print(f"{figures['tiles']} tiles, {figures['masks']} masks, {figures['seconds']:.0f} s for {figures['megapixels']:.1f} MP: "
          f"{figures['seconds_per_megapixel']:.1f} s/MP  (stages: {figures['stage_seconds']})")
    print("| frame | road IoU % | occluded road | vegetation | background |")
    print("|---|---|---|---|---|")
    for name, iou in [*figures["frames"].items(), ("both", figures["all"])]:
        cells = " | ".join(f"{iou[c]:.1f}" if iou[c] is not None else "—" for c in ("road", "occluded_road", "vegetation", "background"))
        print(f"| {name} | {cells} |")
    if args.overlay:
        nadir = args.data / "images" / "NITR_FR_1.jpg"
        workspace = Workspace(work / "run")
        overlay_png(read_image(nadir), frame_labels(workspace, nadir), args.overlay)
        print(f"overlay: {args.overlay} ({args.overlay.stat().st_size // 1024} KB)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
