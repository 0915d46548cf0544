"""The typed summary every stage records in its manifest (``<stage>/manifest.json``, key ``summary``).

One ``TypedDict`` per stage: what :meth:`roadparse.workspace.StageRun.finish` writes after the
``items`` and ``failed`` counts every stage has, what the stage's ``run()`` returns in its
manifest and what :class:`roadparse.Run`'s stage methods return. Read a finished stage's
summary with :func:`roadparse.artifacts.stage_summary`, which names the stage and so the type.
"""

from __future__ import annotations

from typing import Literal, TypedDict

StageName = Literal["roi", "masks", "embed", "cluster", "pseudolabel", "selftrain", "sweep"]
"""A stage that writes a manifest."""


class StageCounts(TypedDict):
    """What every stage's summary starts with."""

    items: int
    """Items finished (frames, tiles, rounds, configurations)."""
    failed: int
    """Items that failed (listed with their errors in the manifest's ``failed``)."""


class RoiSummary(StageCounts):
    """``roi``: road boxes found in the frames and the tiles cut from them."""

    frames: int
    tiles: int
    frames_without_road: list[str]
    frames_with_warnings: int
    gsd_sources: dict[str, int]
    """How many frames took their GSD from each source (``geotiff``, ``exif``, ``setting``, ...)."""
    max_processed_share: float
    problems: dict[str, str]
    """Frame (or file) name -> what went wrong: warnings, failures, skipped files."""
    skipped: dict[str, str]
    """Entries of the frames folder that are not images, with the reason."""
    mode: str


class MasksSummary(StageCounts):
    """``masks``: the masks generated on every tile."""

    tiles: int
    masks: int
    masks_per_tile: float
    coverage: float
    """Share of tile pixels under at least one mask."""
    tiles_without_masks: int
    flat_tiles: int
    min_mask_area_px: dict[str, int]
    """GSD (cm/px, as text) -> the smallest mask kept, in pixels at that GSD."""


class EmbedSummary(StageCounts):
    """``embed``: one feature row per mask and layer."""

    masks: int
    dims: dict[str, int]
    """Layer (as text) -> feature dimensions."""
    tiles: int
    encoder: str
    layers: list[int]
    crops_encoded_now: int
    crops_per_second: float | None
    colour_gains: dict[str, list[float]] | None
    """Frame -> per-channel gains (``embed.colour_normalise: frame``), else None."""


class ClusteringInfo(TypedDict):
    """What :func:`roadparse.clustering.cluster` reports (methods add their own keys)."""

    method: str
    n_clusters: int
    points: int
    dims: int
    sample_size: int
    seconds: float
    warnings: list[str]
    sizes: list[int]
    """Masks per cluster, by cluster id."""


class ClusterSummary(StageCounts):
    """``cluster``: every embedded mask assigned to one of ``n_clusters`` over-clusters."""

    masks: int
    n_clusters: int
    clustering: ClusteringInfo


class PseudolabelSummary(StageCounts):
    """``pseudolabel``: the masks painted with their cluster's class under the merge map."""

    pixels: dict[str, int]
    """Class -> pixels painted."""
    masks: dict[str, int]
    """Class -> masks painted."""
    unlabelled_pixels: int
    unlabelled_share: float
    unembedded_masks: int
    merge_map: str
    """The merge map painted with."""


class TrainingBudgetRecord(TypedDict):
    """One self-training round's budget (:class:`roadparse.stages.selftrain.budget.TrainingBudget`)."""

    iterations: int
    batch_size: int
    crops: int
    tiles: int
    classes: int
    relabel_windows: int
    rule: str


class SelftrainSummary(StageCounts):
    """``selftrain``: the rounds run, why they stopped, and the model handed on."""

    rounds_run: int
    stopped_by: str | None
    stop_rule: str
    """``dev_miou`` (dev labels given) or ``label_agreement``."""
    best_round: int
    """0: the pseudo-labels were best, no model is handed on."""
    model: str | None
    """The best round's model folder, relative to ``selftrain/`` (None when round 0 is best)."""
    labels: str
    """The best labels' folder, relative to the work directory."""
    verdict: str
    lost_classes: dict[str, list[str]] | None
    dev_miou: dict[str, float] | None
    budget: TrainingBudgetRecord


class SweepSummary(StageCounts):
    """``sweep``: every embedded layer x clustering method scored."""

    configurations: int


StageSummary = (
    RoiSummary | MasksSummary | EmbedSummary | ClusterSummary | PseudolabelSummary | SelftrainSummary | SweepSummary
)
"""The summary of any stage's manifest."""
