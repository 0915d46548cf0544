"""CLI for the roi stage (not implemented yet)."""

import click


@click.command("roi")
def roi_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse roi` is not implemented yet")

