"""``roadparse status WORKDIR``: each stage done / partial / stale / missing."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.workspace import Workspace


@click.command("status")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def status_cmd(workdir: Path) -> None:
    """Show each stage of WORKDIR: done / partial (n of m) / stale / missing."""
    for status in Workspace(workdir).status():
        click.echo(f"{status.stage:<12} {status.describe()}")
