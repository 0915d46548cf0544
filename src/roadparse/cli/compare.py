"""CLI for ``roadparse compare``: what changed between two exported surveys, per chainage interval."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from roadparse.cli.common import fail
from roadparse.cli.report import centreline_options


@click.command("compare")
@click.argument("survey_a", type=click.Path(exists=True, path_type=Path))
@click.argument("survey_b", type=click.Path(exists=True, path_type=Path))
@centreline_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="output folder")
def compare_cmd(survey_a: Path, survey_b: Path, centreline: Path, interval_m: float, corridor_m: float,
                direction: Literal["forward", "backward", "both"], out: Path) -> None:
    """Compare SURVEY_B with the earlier SURVEY_A (`roadparse export` GeoPackages or their folders, both predicted
    by the same model): per interval, change in marking wear, markings missing in B, new crack sealing; intervals
    either survey did not image are not comparable. Writes compare.gpkg, changes.csv, missing_markings.csv,
    compare.html."""
    from roadparse.stages.report.compare import compare_surveys

    try:
        result = compare_surveys(survey_a, survey_b, centreline, out, interval_m=interval_m, corridor_m=corridor_m,
                                 direction=direction)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
        return
    changed = sum(row["changed"] for row in result["intervals"])
    skipped = sum(1 - row["comparable"] for row in result["intervals"])
    click.echo(f"{changed} of {len(result['intervals'])} interval(s) changed, {skipped} not comparable, "
               f"{len(result['missing'])} marking(s) missing → {out}")
