"""``roadparse demo``: the whole pipeline offline on generated drone-road frames, with a report.

Synthetic frames (exact ground truth) → offline ROI → tiles → Felzenszwalb masks →
EfficientNet-Lite0 embeddings → spectral over-clustering → merge map suggested by majority
vote on the labels of two training frames (accepted automatically here, the one step a person
does in real use; the dev frames that are scored named nothing) → pseudo-labels → teacher + student (SegFormer-B0) → evaluation → report.html.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from roadparse.artifacts import (
    best_model_dir,
    gallery_path,
    merge_map_path,
    pseudo_label_dir,
    round_dirs,
    stage_summary,
)
from roadparse.config import Settings, dump_settings, load_settings
from roadparse.dev_split import dev_tiles
from roadparse.io.images import list_images
from roadparse.io.labels import load_classes
from roadparse.pipeline import (
    PipelineResult,
    finish_pipeline,
    run_until_merge,
    suggested_merge_map,
)
from roadparse.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSize:
    """How much data and training the demo uses."""

    frames: int = 8
    width: int = 2400
    height: int = 1600
    iterations: int | None = None  # None: the demo profile's value


def demo_settings(
    out: Path, data: Path, dev_frames: list[str], overrides: list[str] | None = None,
    naming_frames: list[str] | None = None,
) -> Settings:
    """Returns the demo profile (``roadparse/data/demo.yaml``) pointed at ``data`` and ``out``
    (``naming_frames``: the frames whose labels name the clusters, see ``run.naming_frames``)."""
    profile = resources.files("roadparse.data").joinpath("demo.yaml")
    with resources.as_file(profile) as path:
        base = [
            f"run.frames={data / 'frames'}",
            f"run.workdir={out / 'run'}",
            f"run.dev_labels={data / 'labels'}",
            f"run.dev_frames={json.dumps(dev_frames)}",
        ]
        if naming_frames is not None:
            base.append(f"run.naming_frames={json.dumps(naming_frames)}")
        return load_settings(path, base + list(overrides or []))


def naming_frames_of(split: dict[str, list[str]]) -> list[str]:
    """Returns the frames whose labels name the demo's clusters: the first training frames, as
    many as there are dev frames, so that the dev scores are taken on frames that named nothing."""
    return sorted(split["train"])[: len(split["dev"])]


NAMINGS = ("train", "tiles", "dev")
"""Who names the clusters in the demo and the benchmarks (:func:`naming_overrides`)."""


def naming_overrides(split: dict[str, list[str]], naming: str) -> list[str]:
    """Returns the settings overrides for one of :data:`NAMINGS`.

    ``train``: the labels of the first training frames, as many as the dev frames (the demo's
    way, :func:`naming_frames_of`); ``tiles``: the same share of the training frames' tiles, drawn
    across all of them (``run.naming_share``: a person who labels tiles here and there, as
    #12's separate set was named with 24 of its 120 tiles); ``dev``: the dev frames (their scores
    flatter the pseudo-labels).
    """
    if naming == "train":
        return [f"run.naming_frames={json.dumps(naming_frames_of(split))}"]
    if naming == "tiles":
        return [f"run.naming_share={len(split['dev']) / len(split['train'])!r}"]
    if naming == "dev":
        return []
    raise ValueError(f"unknown naming {naming!r}; choose one of {', '.join(NAMINGS)}")


def run_demo(
    out: str | Path, size: DemoSize = DemoSize(), overrides: list[str] | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Runs the offline demo into ``out``; returns the summary (metrics per round, timings, report path,
    the self-training summary with its verdict). ``announce`` receives the training budget line."""
    from roadparse.synth import generate_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if not (data / "split.json").exists():
        generate_dataset(data, n_frames=size.frames, width=size.width, height=size.height, seed=0)
    timings["synth"] = round(time.perf_counter() - start, 2)
    split = json.loads((data / "split.json").read_text())
    extra = list(overrides or [])
    if size.iterations is not None:
        extra.append(f"selftrain.iterations={size.iterations}")
        extra.append(f"selftrain.checkpoint_every={max(1, size.iterations // 3)}")
    settings = demo_settings(out, data, split["dev"], extra, naming_frames=naming_frames_of(split))
    workspace = Workspace(settings.run.workdir)
    with workspace.lock():  # one writer: a second demo into the same folder fails at once, naming this one
        workspace.write_settings(dump_settings(settings))
        result = PipelineResult(workspace.root)
        run_until_merge(workspace, settings, list_images(data / "frames"), result)
        suggested = suggested_merge_map(workspace, settings)
        merge_map = merge_map_path(workspace, settings)
        if suggested is None:
            raise RuntimeError("the demo could not suggest a merge map (no dev labels)")
        shutil.copyfile(suggested, merge_map)
        finish_pipeline(workspace, settings, result, announce)
    started = time.perf_counter()
    measured = measure_dev_frames(out, workspace, settings, data / "frames", split["dev"])
    result.seconds = {"synth": timings["synth"], **result.seconds, "predict + export": round(time.perf_counter() - started, 2)}
    report = write_demo_report(out, workspace, settings, result, merge_map, measured)
    return {
        "report": str(report),
        "metrics": {k: v["scores"] for k, v in result.metrics.items()},
        "seconds": result.seconds,
        "total_seconds": round(time.perf_counter() - start, 1),
        "selftrain": result.manifests["selftrain"]["summary"],
    }


def measure_dev_frames(
    out: Path, workspace: Workspace, settings: Settings, frames_dir: Path, dev_frames: list[str]
) -> str | None:
    """Predicts the dev frames whole with the run's model and exports them (``out/predictions/``:
    labels, ``survey.gpkg``, measurements); returns the measurements' HTML for the report, or None
    when the run hands on no model (the pseudo-labels won)."""
    from roadparse.stages.export.measure import measurements_html
    from roadparse.stages.export.run import export_vectors
    from roadparse.stages.predict import predict_files

    model = best_model_dir(workspace) if workspace.read_manifest("selftrain") is not None else None
    if model is None:
        return None
    frames = [path for path in list_images(frames_dir) if path.stem in set(dev_frames)]
    predictions = out / "predictions"
    predict_files(model, frames, predictions, settings)
    exported = export_vectors(predictions, predictions / "survey.gpkg", "gpkg", gsd_cm=settings.predict.gsd_cm)
    return str(measurements_html(exported["measurements"], exported["survey"], exported["survey_totals"]))


def write_demo_report(
    out: Path, workspace: Workspace, settings: Settings, result: PipelineResult, merge_map: Path,
    measurements: str | None = None,
) -> Path:
    """Writes ``out/report.html`` for a finished demo run (``measurements``: HTML of the dev frames'
    measurements, see :func:`measure_dev_frames`)."""
    from roadparse.report.html import write_report

    classes = load_classes(settings.classes)
    label_dirs = {"pseudo-label": pseudo_label_dir(workspace)}
    for _, round_dir in round_dirs(workspace):
        label_dirs[f"{settings.selftrain.architecture} {round_dir.name.replace('_', ' ')}"] = round_dir / "labels"
    gallery = gallery_path(workspace)
    gallery_html = _gallery_fragment(workspace)
    notes = [
        "Offline demo: synthetic drone-road frames rendered at 0.25 cm/px with exact ground truth; "
        "backends that need no downloaded weights (offline ROI finder, Felzenszwalb masks, EfficientNet-Lite0 "
        f"ImageNet features, {settings.selftrain.architecture} on {settings.selftrain.backbone}).",
        "The merge map was suggested by majority vote of ground-truth classes under each cluster's masks on "
        + (f"{len(settings.run.naming_frames)} naming frames ({', '.join(settings.run.naming_frames)}), not the dev "
           "frames the scores are measured on," if settings.run.naming_frames else "the dev split")
        + " and accepted as is. Labels were used for naming clusters only, never for training.",
        f"Full cluster gallery: {gallery}",
    ]
    train_manifest = result.manifests.get("selftrain") or workspace.read_manifest("selftrain")
    train_summary = stage_summary(train_manifest, "selftrain") if train_manifest is not None else None
    return write_report(
        out / "report.html",
        workspace=workspace,
        classes=classes,
        metrics=result.metrics,
        seconds=result.seconds,
        sample_tiles=dev_tiles(workspace, settings.run),
        label_dirs=label_dirs,
        gt_dir=Path(settings.run.dev_labels) if settings.run.dev_labels else None,
        settings_yaml=dump_settings(settings),
        merge_map=yaml.safe_load(merge_map.read_text()),
        gallery_html=gallery_html,
        notes=notes,
        verdict=train_summary["verdict"] if train_summary else None,
        flags=[f"Round {r} lost classes the pseudo-labels had (dev IoU >= 50 % -> < 25 %): {', '.join(names)}."
               for r, names in ((train_summary["lost_classes"] if train_summary else None) or {}).items()],
        measurements=measurements,
    )


def _gallery_fragment(workspace: Workspace) -> str:
    try:
        from roadparse.report.gallery import render_gallery_fragment
    except ImportError:
        return "<p class='note'>Cluster gallery not available.</p>"
    return render_gallery_fragment(workspace)
