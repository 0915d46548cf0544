"""CLI for the train stage (not implemented yet)."""

import click


@click.command("train")
def train_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse train` is not implemented yet")


@click.command("predict")
def predict_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`roadparse predict` is not implemented yet")

