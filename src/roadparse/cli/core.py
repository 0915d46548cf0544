"""Subcommands that are not pipeline stages: config, status, evaluate."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, resolve_settings
from roadparse.config import defaults_yaml, dump_settings
from roadparse.workspace import Workspace


@click.command("config")
@click.option("--defaults", is_flag=True, help="print the complete commented default settings")
@config_options
def config_cmd(defaults: bool, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print settings: the commented defaults, or a config file resolved with overrides."""
    if defaults:
        click.echo(defaults_yaml(), nl=False)
        return
    click.echo(dump_settings(resolve_settings(config_path, overrides)), nl=False)


@click.command("status")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def status_cmd(workdir: Path) -> None:
    """Show each stage of WORKDIR: done / partial (n of m) / stale / missing."""
    for status in Workspace(workdir).status():
        click.echo(f"{status.stage:<12} {status.describe()}")


@click.command("evaluate")
@click.argument("pred_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("gt_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="classes file (default: the built-in road classes)")
@click.option("--matching", type=click.Choice(["none", "hungarian", "majority"]), default="none",
              help="ids are classes (none) or clusters matched to classes one-to-one / many-to-one")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write metrics JSON here (a .md table is written beside it)")
def evaluate_cmd(pred_dir: Path, gt_dir: Path, classes_path: Path | None, matching: str, out_path: Path | None) -> None:
    """Compare label PNGs in PRED_DIR with ground truth in GT_DIR (matched by file name).

    Prints IoU per class, mIoU and pixel accuracy from pixel counts summed over the set.
    """
    from roadparse.evaluation_io import evaluate_dirs

    try:
        result = evaluate_dirs(pred_dir, gt_dir, classes_path=classes_path, matching=matching, out_path=out_path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result["markdown"], nl=False)
