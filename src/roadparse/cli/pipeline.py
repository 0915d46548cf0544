"""CLI for the pipeline stage (not implemented yet)."""

import click


@click.command("run")
def run_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse run` is not implemented yet")


@click.command("demo")
def demo_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse demo` is not implemented yet")

