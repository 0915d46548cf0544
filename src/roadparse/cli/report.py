"""CLI for ``roadparse report``: an exported survey measured per chainage interval along a centreline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from roadparse.cli.common import fail

SURVEY_HELP = "SURVEY: a `roadparse export` GeoPackage, or the folder holding export.gpkg (e.g. the predict folder)"


Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def centreline_options(command: Decorated) -> Decorated:
    """Adds the options ``report`` and ``compare`` share."""
    options = [
        click.option("--centreline", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
                     help="road centrelines (GeoPackage, GeoJSON, Shapefile: LineStrings with a CRS; id and name kept)"),
        click.option("--interval-m", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="interval length along the centreline"),
        click.option("--corridor-m", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="corridor width centred on the centreline (set it to the road's width)"),
        click.option("--direction", type=click.Choice(["forward", "backward", "both"]), default="forward",
                     show_default=True, help="chainage from the line's start (forward), its end (backward), or one "
                     "carriageway per direction, each on the right of its travel (both)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("report", epilog=SURVEY_HELP)
@click.argument("survey", type=click.Path(exists=True, path_type=Path))
@centreline_options
@click.option("--aggregate", type=click.Choice(["mean", "worst"]), default="mean", show_default=True,
              help="interval wear: unpainted share of all its markings (mean) or of its most worn marking (worst)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="output folder [default: SURVEY's folder / report]")
def report_cmd(survey: Path, centreline: Path, interval_m: float, corridor_m: float,
               direction: Literal["forward", "backward", "both"], aggregate: Literal["mean", "worst"], out: Path | None) -> None:
    """Measure SURVEY per chainage interval of each centreline: coverage, areas, marking length and wear, crack
    sealing, cones. Writes report.gpkg (intervals, interval_cells, markings; QGIS styles), intervals.csv,
    markings.csv, report.html with strip charts, and strips.png."""
    from roadparse.stages.report.run import make_report

    out = out or (survey if survey.is_dir() else survey.parent) / "report"
    try:
        result = make_report(survey, centreline, out, interval_m=interval_m, corridor_m=corridor_m,
                             direction=direction, aggregate=aggregate)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
        return
    click.echo(f"{len(result['intervals'])} interval(s), {len(result['markings'])} marking(s) → {out}")
