"""``roadparse selftrain WORKDIR`` (alias ``train``): teacher → relabel → student rounds."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    summary_lines,
    writer_options,
)


@click.command("selftrain")
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dev-labels", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="folder of frame ground-truth label PNGs (<frame stem>.png): stop rounds by dev mIoU")
@click.option("--dev-tiles", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="text file of dev-split tile ids, one per line (default: every tile with ground truth)")
@config_options
@writer_options
def selftrain_cmd(workdir: Path, dev_labels: Path | None, dev_tiles: Path | None,
              config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Self-train a segmenter on WORKDIR's pseudo-labels: teacher, relabel, student, ...

    Rounds stop after selftrain.rounds or when a round stops improving (dev mIoU with
    --dev-labels, else agreement between successive rounds' labels). Rerun to resume.
    Small CPU runs: lower selftrain.iterations and raise selftrain.lr, e.g.
    --set selftrain.iterations=300 --set selftrain.lr=0.001 --set selftrain.pretrained=false.
    Several GPUs: torchrun --nproc_per_node N "$(which roadparse)" selftrain WORKDIR.
    """
    from roadparse.artifacts import best_model_dir, stage_summary
    from roadparse.models import ModelLoadError
    from roadparse.stages import selftrain

    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    tile_ids = None
    if dev_tiles is not None:
        tile_ids = [line.strip() for line in dev_tiles.read_text().splitlines() if line.strip()]
    try:
        manifest = selftrain.run(workspace, settings, dev_labels=dev_labels, dev_tiles=tile_ids, announce=click.echo)
    except (ValueError, ModelLoadError) as exc:
        fail(str(exc))
        return
    if "stage" not in manifest:  # another rank of a distributed run: rank 0 reports
        return
    summary = stage_summary(manifest, "selftrain")
    best = best_model_dir(workspace)
    click.echo(f"self-training: {summary['rounds_run']} round(s), stopped: {summary['stopped_by']}; "
               f"best model: {best or 'none (the pseudo-labels are best)'}")
    click.echo(summary_lines(summary))
