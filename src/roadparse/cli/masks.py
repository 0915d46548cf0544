"""CLI for the masks stage (not implemented yet)."""

import click


@click.command("masks")
def masks_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse masks` is not implemented yet")

