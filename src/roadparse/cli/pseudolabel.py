"""``roadparse pseudolabel WORKDIR``: masks painted with their cluster's class."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    WORKDIR,
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    writer_options,
)


@click.command("pseudolabel")
@WORKDIR
@click.option(
    "--merge-map",
    "merge_map",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="merge map YAML (default: WORKDIR/<pseudolabel.merge_map>)",
)
@config_options
@writer_options
def pseudolabel_cmd(
    workdir: Path, merge_map: Path | None, config_path: Path | None, overrides: tuple[str, ...]
) -> None:
    """Paint each tile's masks with their cluster's class (merge map); write pseudolabel/labels/*.png."""
    from roadparse.artifacts import stage_summary
    from roadparse.stages import pseudolabel

    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        manifest = pseudolabel.run(workspace, settings, merge_map_path=merge_map)
    except ValueError as exc:
        fail(str(exc))
    summary = stage_summary(manifest, "pseudolabel")
    click.echo(
        f"{summary['items']} tiles labelled ({summary['failed']} failed), {summary['unlabelled_share']:.1%} of pixels unlabelled"
    )
    click.echo(f"labels: {pseudolabel.labels_dir(workspace)}")
