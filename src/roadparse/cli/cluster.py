"""``roadparse cluster WORKDIR`` (stage 4) and ``roadparse cluster suggest WORKDIR``."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    LABELS_OPTION,
    PURITY_OPTION,
    WORKDIR,
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    writer_options,
)


class _DefaultRunGroup(click.Group):
    """``roadparse cluster WORKDIR`` runs the stage; ``roadparse cluster suggest WORKDIR`` names clusters."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("cluster", cls=_DefaultRunGroup)
def cluster_cmd() -> None:
    """Over-cluster the mask embeddings (paper: spectral, k=20) and write the gallery.

    \b
    roadparse cluster WORKDIR [--labels GT_DIR]       cluster, gallery (+ suggested merge map)
    roadparse cluster suggest WORKDIR --labels GT_DIR  suggest a merge map by majority vote
    roadparse cluster suggest WORKDIR --zero-shot MODEL  ... or by CLIP/SigLIP on typical crops
    """


@cluster_cmd.command("run")
@WORKDIR
@LABELS_OPTION
@PURITY_OPTION
@config_options
@writer_options
def cluster_run_cmd(
    workdir: Path,
    labels_dir: Path | None,
    min_purity: float | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Cluster WORKDIR's embeddings; write assignments, the gallery and (with --labels) a suggested merge map."""
    from roadparse.artifacts import stage_summary
    from roadparse.pipeline import next_step_text
    from roadparse.stages import cluster

    if min_purity is not None:
        overrides = (*overrides, f"cluster.min_purity={min_purity}")
    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        manifest = cluster.run(workspace, settings, labels_dir=labels_dir)
    except ValueError as exc:
        fail(str(exc))
    summary = stage_summary(manifest, "cluster")
    sizes = summary["clustering"]["sizes"]
    click.echo(f"{summary['masks']} masks in {len(sizes)} clusters (sizes {sizes})")
    click.echo(next_step_text(workspace, settings))


@cluster_cmd.command("suggest")
@WORKDIR
@LABELS_OPTION
@PURITY_OPTION
@click.option(
    "--zero-shot",
    "zero_shot",
    default=None,
    metavar="MODEL",
    help="CLIP/SigLIP id or local path: name clusters from their typical crops",
)
@click.option("--device", default="auto", help="torch device for --zero-shot")
@config_options
@writer_options
def cluster_suggest_cmd(
    workdir: Path,
    labels_dir: Path | None,
    min_purity: float | None,
    zero_shot: str | None,
    device: str,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Suggest a merge map (cluster/merge_map.suggested.yaml) from ground truth or zero-shot scores."""
    from roadparse.models import ModelLoadError
    from roadparse.pipeline import next_step_text
    from roadparse.stages import cluster

    if (labels_dir is None) == (zero_shot is None):
        fail("give exactly one of --labels GT_DIR or --zero-shot MODEL")
    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    warnings: list[str] = []  # zero-shot naming has none
    try:
        if labels_dir is not None:
            path, suggestions, warnings = cluster.suggest_by_majority(
                workspace, settings, labels_dir, min_purity=min_purity
            )
            cluster.write_gallery_safely(workspace, settings, suggestions, warnings)
        elif zero_shot is not None:  # exactly one of the two is given (checked above)
            path, suggestions = cluster.suggest_by_zero_shot(
                workspace, settings, zero_shot, device=device, min_score=min_purity or 0.0
            )
    except ModelLoadError as exc:
        fail(f"zero-shot naming skipped: {exc}")
    except ValueError as exc:
        fail(str(exc))
    for item in suggestions:
        split = f"  split: {', '.join(p['class'] for p in item['split_parts'])}" if "split_parts" in item else ""
        click.echo(
            f"cluster {item['cluster']:>3}: {item['class']:<16} purity {item['purity']:.2f}  ({item['masks']} masks){split}"
        )
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"suggested merge map: {path}")
    click.echo(next_step_text(workspace, settings))
