"""``roadparse demo``: the whole pipeline offline on synthetic frames, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import print_metrics, summary_lines


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="output folder (data, run, report.html)")
@click.option("--frames", "n_frames", type=int, default=8, show_default=True, help="synthetic frames to generate")
@click.option("--width", type=int, default=2400, show_default=True, help="frame width in pixels (0.25 cm/px)")
@click.option("--height", type=int, default=1600, show_default=True, help="frame height in pixels")
@click.option("--iterations", type=int, default=None, help="training iterations per round (default: the demo profile's)")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="override one demo setting (repeatable)")
def demo_cmd(out: Path, n_frames: int, width: int, height: int, iterations: int | None, overrides: tuple[str, ...]) -> None:
    """Run the whole pipeline offline on generated drone-road frames and write report.html."""
    from roadparse.demo import DemoSize, run_demo

    try:
        summary = run_demo(out, DemoSize(n_frames, width, height, iterations), list(overrides), announce=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    print_metrics(summary["metrics"], summary["seconds"])
    click.echo(summary_lines(summary["selftrain"]))
    click.echo(f"total {summary['total_seconds']:.0f} s; report: {summary['report']}")
