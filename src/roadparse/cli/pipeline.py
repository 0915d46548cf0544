"""``roadparse run CONFIG`` and ``roadparse demo``."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import resolve_settings
from roadparse.cli.train import summary_lines


def _print_metrics(metrics: dict[str, dict], seconds: dict[str, float]) -> None:
    if seconds:
        click.echo("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if not metrics:
        return
    names = list(next(iter(metrics.values()))["iou"])
    width = max(len(k) for k in metrics) + 2
    click.echo(f"{'':<{width}}" + "".join(f"{n[:12]:>13}" for n in names) + f"{'mIoU':>8}{'PA':>8}")
    for title, s in metrics.items():
        cells = "".join(f"{'-' if s['iou'][n] is None else format(s['iou'][n], '.2f'):>13}" for n in names)
        click.echo(f"{title:<{width}}{cells}{s['miou']:>8.2f}{s['pixel_accuracy']:>8.2f}")


@click.command("run")
@click.argument("config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--frames", type=click.Path(exists=True, path_type=Path), default=None, help="frames folder (overrides run.frames)")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None, help="work directory (overrides run.workdir)")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)")
def run_cmd(config_path: Path, frames: Path | None, workdir: Path | None, overrides: tuple[str, ...]) -> None:
    """Run every stage on the frames named in CONFIG, resuming where a previous run stopped.

    Stops after clustering when the merge map is missing, saying where the gallery and
    the suggested map are; run the same command again once the map is in place.
    """
    from roadparse.pipeline import MergeMapMissing, run_pipeline

    extra = list(overrides)
    if frames is not None:
        extra.append(f"run.frames={frames}")
    if workdir is not None:
        extra.append(f"run.workdir={workdir}")
    settings = resolve_settings(config_path, tuple(extra))
    try:
        result = run_pipeline(settings, announce=click.echo)
    except MergeMapMissing as exc:
        click.echo(str(exc))
        raise SystemExit(3) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _print_metrics({k: v["scores"] for k, v in result.metrics.items()}, result.seconds)
    if "train" in result.manifests:
        click.echo(summary_lines(result.manifests["train"]["summary"]))
    click.echo(f"done: {result.workdir}")


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
    _print_metrics(summary["metrics"], summary["seconds"])
    click.echo(summary_lines(summary["train"]))
    click.echo(f"total {summary['total_seconds']:.0f} s; report: {summary['report']}")
