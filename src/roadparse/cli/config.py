"""``roadparse config``: the commented defaults, or a config resolved with overrides."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, resolve_settings
from roadparse.config import defaults_yaml, dump_settings


@click.command("config")
@click.option("--defaults", is_flag=True, help="print the complete commented default settings")
@config_options
def config_cmd(defaults: bool, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print settings: the commented defaults, or a config file resolved with overrides."""
    if defaults:
        click.echo(defaults_yaml(), nl=False)
        return
    click.echo(dump_settings(resolve_settings(config_path, overrides)), nl=False)
