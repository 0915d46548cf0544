"""CLI for the synth stage (not implemented yet)."""

import click


@click.command("synth")
def synth_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse synth` is not implemented yet")

