"""CLI for the embed stage (not implemented yet)."""

import click


@click.command("embed")
def embed_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse embed` is not implemented yet")

