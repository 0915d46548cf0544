"""CLI for the cluster stage (not implemented yet)."""

import click


@click.command("cluster")
def cluster_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse cluster` is not implemented yet")


@click.command("pseudolabel")
def pseudolabel_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse pseudolabel` is not implemented yet")


@click.command("sweep")
def sweep_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse sweep` is not implemented yet")

