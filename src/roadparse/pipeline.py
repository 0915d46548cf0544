"""``roadparse run``: every stage in order on one work directory, resuming where it stopped.

The one human step of COMRP is the merge map (which over-clusters are which class, and
which are mixed and discarded). Without ``WORKDIR/merge_map.yaml`` the run stops after
clustering and says where the gallery and the suggested map are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadparse.artifacts import gallery_path, pseudo_label_dir, round_dirs, suggested_merge_map_path
from roadparse.config import Settings, dump_settings
from roadparse.dev_split import dev_tiles, score_label_dir
from roadparse.io.images import scan_images
from roadparse.io.labels import load_classes
from roadparse.workspace import Workspace

log = logging.getLogger(__name__)


class MergeMapMissing(RuntimeError):
    """The run reached the merge step and needs a merge map from the user."""


@dataclass
class PipelineResult:
    """What a full run produced: manifests per stage, timings and dev-set metrics."""

    workdir: Path
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


def _timed(result: PipelineResult, stage: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    start = time.perf_counter()
    manifest = fn(*args, **kwargs)
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


def run_pipeline(
    settings: Settings, *, frames: list[Path] | None = None, announce: Callable[[str], None] | None = None
) -> PipelineResult:
    """Runs the whole COMRP pipeline with ``settings``; returns manifests, timings and metrics.

    Raises:
        MergeMapMissing: clustering finished but ``WORKDIR/<pseudolabel.merge_map>`` does not exist.
        ValueError: bad inputs (no frames, no tiles, ...), with a message naming them.
    """
    workspace = Workspace(settings.run.workdir)
    workspace.write_settings(dump_settings(settings))
    skipped: dict[Path, str] = {}
    if frames is None:
        if settings.run.frames is None:
            raise ValueError("no frames given: set run.frames in the config or pass --frames")
        listing = scan_images(settings.run.frames)
        frames, skipped = listing.images, listing.skipped
    if not frames:
        raise ValueError(f"{settings.run.frames}: no images (.jpg, .png, .tif) found")
    result = PipelineResult(workspace.root)
    run_until_merge(workspace, settings, frames, result, skipped)

    merge_map = workspace.root / settings.pseudolabel.merge_map
    if not merge_map.exists():
        suggested = suggested_merge_map(workspace, settings)
        gallery = gallery_path(workspace)
        hint = (
            f"cp {suggested} {merge_map}" if suggested else f"write {merge_map} (clusters: {{0: road, 1: discard, ...}})"
        )
        raise MergeMapMissing(
            f"clustering is done; the merge map is the one human step.\n"
            f"  look at the clusters: {gallery}\n"
            + (f"  suggested map (majority vote on the dev labels): {suggested}\n" if suggested else "")
            + f"  then: {hint}\n  and run the same `roadparse run` command again to continue."
        )
    finish_pipeline(workspace, settings, result, announce)
    return result


def finish_pipeline(
    workspace: Workspace, settings: Settings, result: PipelineResult, announce: Callable[[str], None] | None = None
) -> None:
    """Runs pseudolabel → self-training, then evaluates every round on the dev tiles (if labelled).

    ``announce`` receives the training budget line before training starts (the CLI echoes it).
    """
    from roadparse.stages import pseudolabel, selftrain

    _timed(result, "pseudolabel", pseudolabel.run, workspace, settings)
    dev_labels = Path(settings.run.dev_labels) if settings.run.dev_labels else None
    dev_ids = [tile.id for tile in dev_tiles(workspace, settings.run)] or None
    _timed(result, "selftrain", selftrain.run, workspace, settings, dev_labels=dev_labels, dev_tiles=dev_ids, announce=announce)
    result.metrics = evaluate_rounds(workspace, settings)


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
