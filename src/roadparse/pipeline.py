"""``roadparse run``: every stage in order on one work directory, resuming where it stopped.

The one human step of COMRP is the merge map (which over-clusters are which class, and
which are mixed and discarded). Without ``WORKDIR/merge_map.yaml`` the run stops after
clustering and names the next step: ``roadparse review WORKDIR`` first, then the gallery and
the suggested map for a map written by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadparse.artifacts import (
    continue_command,
    gallery_path,
    merge_map_path,
    pseudo_label_dir,
    record_run_command,
    review_command,
    round_dirs,
    suggested_merge_map_path,
)
from roadparse.config import Settings, dump_settings
from roadparse.dev_split import dev_tiles, score_label_dir
from roadparse.io.images import scan_images
from roadparse.io.labels import load_classes
from roadparse.workspace import StageManifest, Workspace

log = logging.getLogger(__name__)


class MergeMapMissing(RuntimeError):
    """The run reached the merge step and needs a merge map from the user."""


@dataclass
class PipelineResult:
    """What a full run produced: manifests per stage, timings and dev-set metrics."""

    workdir: Path
    manifests: dict[str, StageManifest] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def _timed(result: PipelineResult, stage: str, fn: Any, *args: Any, **kwargs: Any) -> StageManifest:
    start = time.perf_counter()
    manifest: StageManifest = fn(*args, **kwargs)
    result.seconds[stage] = round(time.perf_counter() - start, 2)
    result.manifests[stage] = manifest
    return manifest


def run_until_merge(
    workspace: Workspace,
    settings: Settings,
    frames: list[Path],
    result: PipelineResult,
    skipped: dict[Path, str] | None = None,
) -> None:
    """Runs roi → masks → embed → cluster (each skipped when already complete); ``skipped``: entries
    of the frames folder that are not image files, with the reason (listed in the roi summary)."""
    from roadparse.stages import cluster, embed, masks, roi

    _timed(result, "roi", roi.run, workspace, settings, frames, skipped=skipped)
    _timed(result, "masks", masks.run, workspace, settings)
    _timed(result, "embed", embed.run, workspace, settings)
    _timed(result, "cluster", cluster.run, workspace, settings)


def suggested_merge_map(workspace: Workspace, settings: Settings) -> Path | None:
    """Returns the merge map the cluster stage suggested by majority vote on the dev labels; None without labels."""
    path = suggested_merge_map_path(workspace)
    return path if settings.run.dev_labels is not None and path.exists() else None


def open_run(settings: Settings, command: Sequence[str] | None = None, workspace: Workspace | None = None) -> Workspace:
    """Returns the run's work directory with the settings recorded in it (``settings.yaml``), and
    ``command`` (argv) as the one that continues the run (None: no command can, forget any earlier one).

    Writes under the work directory's lock (held briefly, unless this process holds it already).

    Raises:
        roadparse.locking.WorkdirBusy: another process writes the work directory.
    """
    workspace = workspace or Workspace(settings.run.workdir)
    with workspace.lock():
        workspace.write_settings(dump_settings(settings))
        record_run_command(workspace, command)
    return workspace


def list_frames_of(settings: Settings) -> tuple[list[Path], dict[Path, str]]:
    """Returns the image files of ``run.frames`` and the entries skipped (not images), with the reason.

    Raises:
        ValueError: ``run.frames`` is not set or holds no image.
    """
    if settings.run.frames is None:
        raise ValueError("no frames given: set run.frames in the config or pass --frames")
    listing = scan_images(settings.run.frames)
    if not listing.images:
        raise ValueError(f"{settings.run.frames}: no images (.jpg, .png, .tif) found")
    return listing.images, listing.skipped


def next_step_text(workspace: Workspace, settings: Settings) -> str:
    """Returns what to do once clustering is done, for the terminal: review first, by hand second, then continue."""
    merge_map = merge_map_path(workspace, settings)
    suggested = suggested_merge_map_path(workspace)
    by_hand = (
        f"cp {suggested} {merge_map}, edit it" if suggested.exists()
        else f"write {merge_map} (clusters: {{0: road, 1: discard, ...}})"
    )
    return (
        "clustering is done; naming the clusters (the merge map) is the one human step.\n"
        f"  next: {review_command(workspace)}\n"
        f"        names the clusters in your browser; Save writes {merge_map}\n"
        f"  or by hand: look at the clusters in {gallery_path(workspace)}, then {by_hand}\n"
        f"  then continue: {continue_command(workspace)}"
    )


def run_pipeline(
    settings: Settings,
    *,
    frames: list[Path] | None = None,
    announce: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
    workspace: Workspace | None = None,
) -> PipelineResult:
    """Runs the whole COMRP pipeline with ``settings``; returns manifests, timings and metrics.

    ``command`` (argv) is recorded as the command that continues the run, which the stop for
    the merge map and the review page's Save name.

    Raises:
        MergeMapMissing: clustering finished but ``WORKDIR/<pseudolabel.merge_map>`` does not exist.
        ValueError: bad inputs (no frames, no tiles, ...), with a message naming them.
        roadparse.locking.WorkdirBusy: another process writes the work directory.

    ``workspace``: the work directory at ``settings.run.workdir`` (e.g. opened with ``--retry-failed``);
    its writer lock is held for the whole run.
    """
    workspace = workspace or Workspace(settings.run.workdir)
    with workspace.lock():
        return _run_pipeline(workspace, settings, frames, announce, command)


def _run_pipeline(
    workspace: Workspace, settings: Settings, frames: list[Path] | None, announce: Callable[[str], None] | None,
    command: Sequence[str] | None,
) -> PipelineResult:
    skipped: dict[Path, str] = {}
    if frames is None:
        frames, skipped = list_frames_of(settings)
    if not frames:
        raise ValueError("no frames given")
    open_run(settings, command, workspace)  # after the inputs are checked: a refused run changes nothing
    result = PipelineResult(workspace.root)
    run_until_merge(workspace, settings, frames, result, skipped)
    if not merge_map_path(workspace, settings).exists():
        raise MergeMapMissing(next_step_text(workspace, settings))
    finish_pipeline(workspace, settings, result, announce)
    return result


def finish_pipeline(
    workspace: Workspace, settings: Settings, result: PipelineResult, announce: Callable[[str], None] | None = None
) -> None:
    """Runs pseudolabel → self-training, then evaluates every round on the dev tiles (if labelled).

    ``announce`` receives the training budget line before training starts (the CLI echoes it).
    """
    from roadparse.stages import pseudolabel

    _timed(result, "pseudolabel", pseudolabel.run, workspace, settings)
    _timed(result, "selftrain", run_selftrain, workspace, settings, announce)
    result.metrics = evaluate_rounds(workspace, settings)


def run_selftrain(workspace: Workspace, settings: Settings, announce: Callable[[str], None] | None = None) -> StageManifest:
    """Runs self-training as ``roadparse run`` does: rounds stopped by the dev labels' mIoU when
    ``run.dev_labels`` is set (on the dev split's tiles); returns the stage manifest.

    Raises:
        RuntimeError: this process is not rank 0 of a distributed run (rank 0 writes the manifest).
    """
    from roadparse.stages import selftrain

    dev_labels = Path(settings.run.dev_labels) if settings.run.dev_labels else None
    dev_ids = [tile.id for tile in dev_tiles(workspace, settings.run)] or None
    manifest = selftrain.run(workspace, settings, dev_labels=dev_labels, dev_tiles=dev_ids, announce=announce)
    if "stage" not in manifest:
        raise RuntimeError("self-training ran on a rank other than 0 of a distributed run; rank 0 holds the results")
    return manifest


def evaluate_rounds(workspace: Workspace, settings: Settings) -> dict[str, dict[str, Any]]:
    """Returns dev metrics of the pseudo-labels ("clustering (iter 0)") and of every training round."""
    tiles = dev_tiles(workspace, settings.run)
    if not tiles or settings.run.dev_labels is None:
        return {}
    names = load_classes(settings.classes).names
    metrics = {"clustering (iter 0)": score_label_dir(pseudo_label_dir(workspace), tiles, settings.run.dev_labels, names)}
    arch = settings.selftrain.architecture
    for number, round_dir in round_dirs(workspace):
        if (round_dir / "labels").is_dir():
            metrics[f"{arch} (iter {number})"] = score_label_dir(round_dir / "labels", tiles, settings.run.dev_labels, names)
    return metrics
