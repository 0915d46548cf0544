"""``roadparse init FRAMES``: a short commented config for these frames (profile, GSD, tiles)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("init")
@click.argument("frames", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("roadparse.yaml"), show_default=True,
              help="config file to write; the run's work folder is <out stem>-run beside it")
@click.option("--profile", type=click.Choice(["auto", "paper", "offline"]), default="auto", show_default=True,
              help="auto: paper when the paper's models are in the local Hugging Face cache, else offline")
@click.option("--force", is_flag=True, help="replace --out if it exists")
def init_cmd(frames: Path, out: Path, profile: str, force: bool) -> None:
    """Read FRAMES (a folder or one frame), pick a profile and write a config for them.

    Prints the frames' sizes and GSD (and where it comes from), frames cropped or resized
    after capture, the profile chosen and why, and each setting written.
    """
    from roadparse.initialise import init

    try:
        report = init(frames, out=out, profile=profile, overwrite=force)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(report))
