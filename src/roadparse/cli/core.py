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
def evaluate_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse evaluate` is not implemented yet")
