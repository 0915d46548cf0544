"""CLI for the masks stage: ``roadparse masks WORKDIR``."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    writer_options,
)


@click.command("masks")
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--generator", default=None, help="SAM id, folder or official .pth, or felzenszwalb (same as --set masks.generator=...)")
@click.option("--points-per-side", type=int, default=None, help="SAM point grid per side (paper: 16)")
@click.option("--min-area", type=int, default=None, help="drop masks under this many pixels (paper: 3000)")
@click.option("--device", default=None, help="torch device: auto, cpu, cuda, cuda:1 ...")
@click.option("--list-generators", is_flag=True, help="list the known mask generators and exit")
@config_options
@writer_options
def masks_cmd(workdir: Path, generator: str | None, points_per_side: int | None, min_area: int | None,
              device: str | None, list_generators: bool, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Generate the masks of every tile of WORKDIR (after `roadparse roi`) with SAM or offline superpixels.

    Writes WORKDIR/masks/<tile>.json (COCO RLE); an interrupted run resumes.
    """
    if list_generators:
        from roadparse.models.mask_generators import list_mask_generators

        for name in list_mask_generators():
            click.echo(name)
        return
    extra = list(overrides)
    for key, value in (("generator", generator), ("points_per_side", points_per_side),
                       ("min_mask_area", min_area), ("device", device)):
        if value is not None:
            extra.append(f"masks.{key}={value}")
    settings = resolve_settings(config_path, tuple(extra), workdir)
    workspace = open_workspace(workdir, settings)
    from roadparse.artifacts import stage_summary
    from roadparse.stages import masks

    try:
        manifest = masks.run(workspace, settings)
    except ValueError as exc:
        fail(str(exc))
        return
    summary = stage_summary(manifest, "masks")
    click.echo(
        f"{summary['masks']} masks on {summary['tiles']} tiles ({summary['masks_per_tile']} per tile, "
        f"coverage {summary['coverage']:.1%}); {summary['tiles_without_masks']} tile(s) without masks, "
        f"{summary['failed']} failed -> {workspace.root / 'masks'}"
    )
