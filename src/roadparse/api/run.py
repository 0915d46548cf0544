"""A run as an object: :class:`Run`, its stages as methods, :class:`ReviewStep` and :class:`RunResult`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from roadparse.artifacts import (
    best_model_dir,
    gallery_path,
    merge_map_path,
    review_command,
    stage_summary,
    suggested_merge_map_path,
)
from roadparse.config import ConfigError, Settings, load_settings, parse_overrides
from roadparse.metrics import Scores
from roadparse.pipeline import (
    MergeMapMissing,
    PipelineResult,
    finish_pipeline,
    list_frames_of,
    next_step_text,
    open_run,
    run_selftrain,
    run_until_merge,
)
from roadparse.summaries import (
    ClusterSummary,
    EmbedSummary,
    MasksSummary,
    PseudolabelSummary,
    RoiSummary,
    SelftrainSummary,
)
from roadparse.workspace import Workspace

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
"""A file or folder path, as text or a :class:`pathlib.Path`."""


@dataclass(frozen=True)
class ReviewStep:
    """Where a run stands when clustering is done: what to review and where the merge map goes."""

    workdir: Path
    """The run's work directory."""
    gallery: Path
    """The static cluster gallery, ``cluster/gallery/index.html``."""
    suggested_merge_map: Path | None
    """The merge map suggested from labels (``run.dev_labels`` or ``roadparse cluster suggest``), or None."""
    merge_map: Path
    """Where the merge map goes (``WORKDIR/<pseudolabel.merge_map>``): the review page's Save writes it."""
    command: str
    """The shell command that opens the review page: ``roadparse review WORKDIR``."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced."""

    workdir: Path
    """The run's work directory."""
    seconds: dict[str, float]
    """Wall time per stage of this call, in seconds (a stage already finished costs next to nothing)."""
    metrics: dict[str, Scores]
    """Scores on the dev tiles per labelled set: ``"clustering (iter 0)"`` (the pseudo-labels) and one
    per self-training round; empty without ``run.dev_labels``."""
    model_dir: Path | None
    """The model the run hands on (the best round's ``model/`` folder), or None when the
    pseudo-labels scored best and no model is handed on."""


def _yaml_value(value: Any) -> str:
    """Returns ``value`` as a one-line YAML scalar or flow collection (what ``--set`` parses back)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("...").strip()


def merged_settings(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the nested settings ``base`` with ``overlay``'s values put in (sections merged key by key)."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merged_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


class Run:
    """A roadparse run: one work directory, its stages as methods, resuming.

    Args:
        config: a YAML settings file (e.g. written by ``roadparse init``) or a
            :class:`~roadparse.config.Settings` object.
        workdir: the work directory (default: ``run.workdir`` of the settings).
        frames: a folder (or file) of frames, or a list of image files (default: ``run.frames``).
        overrides: settings by dotted name, e.g. ``{"roi.gsd_cm": 3, "cluster.n_clusters": 30}``.

    Raises:
        roadparse.config.ConfigError: the file is missing or not YAML, or a setting is unknown or mistyped.

    Example:
        ```python
        run = roadparse.Run("roadparse.yaml", overrides={"roi.gsd_cm": 3})
        run.roi()                  # RoiSummary: frames, tiles, GSD sources, problems
        step = run.until_review()  # the other stages up to the clusters
        ```
    """

    def __init__(
        self,
        config: PathLike | Settings,
        *,
        workdir: PathLike | None = None,
        frames: PathLike | Sequence[PathLike] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        extra = [f"{key}={_yaml_value(value)}" for key, value in (overrides or {}).items()]
        self._frame_files: list[Path] | None = None
        settings_extra: list[str] = []
        options: list[str] = []
        if isinstance(frames, str | os.PathLike):
            folder = Path(frames).resolve()
            settings_extra.append(f"run.frames={_yaml_value(str(folder))}")
            options += ["--frames", str(folder)]
        elif frames is not None:
            self._frame_files = [Path(path) for path in frames]
        if workdir is not None:
            root = Path(workdir).resolve()
            settings_extra.append(f"run.workdir={_yaml_value(str(root))}")
            options += ["--workdir", str(root)]
        if isinstance(config, Settings):
            self._config_path: Path | None = None
            data = merged_settings(config.model_dump(mode="json"), parse_overrides(extra + settings_extra))
            try:
                self._settings = Settings.model_validate(data)
            except ValueError as exc:
                raise ConfigError(f"invalid settings: {exc}") from None
        else:
            self._config_path = Path(config).resolve()
            self._settings = load_settings(self._config_path, extra + settings_extra)
        self._command: list[str] | None = None
        if self._config_path is not None and self._frame_files is None:
            self._command = ["roadparse", "run", str(self._config_path), *options]
            for item in extra:
                self._command += ["--set", item]

    @property
    def settings(self) -> Settings:
        """The resolved settings of the run (defaults ⊕ the file ⊕ the overrides)."""
        return self._settings

    @property
    def workdir(self) -> Path:
        """The run's work directory (``run.workdir``)."""
        return Path(self._settings.run.workdir)

    def _workspace(self) -> Workspace:
        """Returns the work directory with the settings (and the command that continues the run) recorded."""
        return open_run(self._settings, self._command)

    def _frames(self) -> tuple[list[Path], dict[Path, str]]:
        if self._frame_files is not None:
            if not self._frame_files:
                raise ValueError("frames: an empty list of images")
            return self._frame_files, {}
        return list_frames_of(self._settings)

    def roi(self) -> RoiSummary:
        """Finds the road in every frame and cuts it into tiles; returns the ``roi`` summary.

        Raises:
            ValueError: no frames (``run.frames`` unset or without images), or bad tiling settings.
        """
        from roadparse.stages import roi

        workspace = self._workspace()
        frames, skipped = self._frames()
        return stage_summary(roi.run(workspace, self._settings, frames, skipped=skipped), "roi")

    def masks(self) -> MasksSummary:
        """Generates the masks of every tile; returns the ``masks`` summary.

        Raises:
            ValueError: ``roi`` has not finished, or the mask generator cannot be loaded.
        """
        from roadparse.stages import masks

        return stage_summary(masks.run(self._workspace(), self._settings), "masks")

    def embed(self) -> EmbedSummary:
        """Embeds every mask with the encoder; returns the ``embed`` summary.

        Raises:
            ValueError: ``masks`` has not finished, the encoder or a layer is unknown, or there are no masks.
        """
        from roadparse.stages import embed

        return stage_summary(embed.run(self._workspace(), self._settings), "embed")

    def cluster(self) -> ClusterSummary:
        """Over-clusters the mask embeddings and writes the gallery (and, with ``run.dev_labels``, a
        suggested merge map); returns the ``cluster`` summary.

        Raises:
            ValueError: ``embed`` has not finished, or fewer masks than clusters.
        """
        from roadparse.stages import cluster

        return stage_summary(cluster.run(self._workspace(), self._settings), "cluster")

    def pseudolabel(self) -> PseudolabelSummary:
        """Paints every tile's masks with their cluster's class under the merge map; returns the
        ``pseudolabel`` summary.

        Raises:
            MergeMapMissing: there is no merge map yet (the message names ``roadparse review``).
            ValueError: ``cluster`` has not finished, or the merge map is invalid.
        """
        from roadparse.stages import pseudolabel

        workspace = self._workspace()
        self._require_merge_map(workspace)
        return stage_summary(pseudolabel.run(workspace, self._settings), "pseudolabel")

    def selftrain(self) -> SelftrainSummary:
        """Self-trains the segmenter on the pseudo-labels (teacher, relabel, student, ...); returns the
        ``selftrain`` summary, whose ``model`` names the model handed on.

        Rounds stop by the dev labels' mIoU when ``run.dev_labels`` is set, as ``roadparse run`` does.

        Raises:
            ValueError: ``pseudolabel`` has not finished.
        """
        return stage_summary(run_selftrain(self._workspace(), self._settings), "selftrain")

    def until_review(self) -> ReviewStep:
        """Runs roi → masks → embed → cluster (each resuming) and returns what to review.

        Returns:
            The :class:`ReviewStep`: run ``step.command`` in a shell to name the clusters in a
            browser; Save writes ``step.merge_map``, then :meth:`resume` finishes the run.
        """
        workspace = self._workspace()
        frames, skipped = self._frames()
        run_until_merge(workspace, self._settings, frames, PipelineResult(workspace.root), skipped)
        return self._review_step(workspace)

    def resume(self) -> RunResult:
        """Runs every stage not yet finished: up to the clusters, then (with the merge map) pseudo-labels,
        self-training and the dev scores.

        Raises:
            MergeMapMissing: clustering is done but there is no merge map yet; the message says how
                to make one (``roadparse review WORKDIR``).
        """
        workspace = self._workspace()
        frames, skipped = self._frames()
        result = PipelineResult(workspace.root)
        run_until_merge(workspace, self._settings, frames, result, skipped)
        self._require_merge_map(workspace)
        finish_pipeline(workspace, self._settings, result, log.info)
        return RunResult(
            workdir=workspace.root,
            seconds=dict(result.seconds),
            metrics={title: entry["scores"] for title, entry in result.metrics.items()},
            model_dir=best_model_dir(workspace),
        )

    def _require_merge_map(self, workspace: Workspace) -> None:
        if not merge_map_path(workspace, self._settings).exists():
            raise MergeMapMissing(next_step_text(workspace, self._settings))

    def _review_step(self, workspace: Workspace) -> ReviewStep:
        suggested = suggested_merge_map_path(workspace)
        return ReviewStep(
            workdir=workspace.root,
            gallery=gallery_path(workspace),
            suggested_merge_map=suggested if suggested.exists() else None,
            merge_map=merge_map_path(workspace, self._settings),
            command=review_command(workspace),
        )

    def __repr__(self) -> str:
        source = self._config_path or "Settings"
        return f"Run({str(source)!r}, workdir={str(self.workdir)!r})"
