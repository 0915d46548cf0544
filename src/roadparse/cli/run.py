"""``roadparse run CONFIG``: every stage in order, resuming."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    print_metrics,
    resolve_settings,
    summary_lines,
    writer_options,
    writer_workspace,
)


@click.command("run")
@click.argument("config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--frames", type=click.Path(exists=True, path_type=Path), default=None, help="frames folder (overrides run.frames)")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None, help="work directory (overrides run.workdir)")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="override one setting (repeatable)")
@writer_options
def run_cmd(config_path: Path, frames: Path | None, workdir: Path | None, overrides: tuple[str, ...]) -> None:
    """Run every stage on the frames named in CONFIG, resuming where a previous run stopped.

    Stops after clustering when the merge map is missing and names the next step,
    `roadparse review WORKDIR`; run the same command again once the map is saved.
    """
    from roadparse.artifacts import stage_summary
    from roadparse.pipeline import MergeMapMissing, run_pipeline

    extra = list(overrides)
    command = ["roadparse", "run", str(config_path.resolve())]  # what continues this run, recorded in WORKDIR
    if frames is not None:
        extra.append(f"run.frames={frames}")
        command += ["--frames", str(frames.resolve())]
    if workdir is not None:
        extra.append(f"run.workdir={workdir}")
        command += ["--workdir", str(workdir.resolve())]
    for override in overrides:
        command += ["--set", override]
    settings = resolve_settings(config_path, tuple(extra))
    workspace = writer_workspace(Path(settings.run.workdir))
    try:
        result = run_pipeline(settings, announce=click.echo, command=command, workspace=workspace)
    except MergeMapMissing as exc:
        click.echo(str(exc))
        raise SystemExit(3) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    print_metrics({k: v["scores"] for k, v in result.metrics.items()}, result.seconds)
    if "selftrain" in result.manifests:
        click.echo(summary_lines(stage_summary(result.manifests["selftrain"], "selftrain")))
    click.echo(f"done: {result.workdir}")
