"""``roadparse sweep WORKDIR --labels GT``: layers x clustering methods (paper Tables 3-5)."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    PURITY_OPTION,
    WORKDIR,
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    writer_options,
)


def _parse_layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    layers: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            layers += list(range(int(low), int(high) + 1)) if high else [int(low)]
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: use e.g. 12, 1-12 or 1,6,12", param_hint="--layers"
            ) from None
    return layers


@click.command("sweep")
@WORKDIR
@click.option(
    "--labels",
    "labels_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="ground-truth label PNGs",
)
@click.option(
    "--layers",
    default=None,
    help="embedded layers to compare, e.g. 1-12 or 6,12 (default: all embedded)",
)
@click.option(
    "--methods",
    default="spectral,kmeans,kmedoids,agglomerative",
    show_default=True,
    help="clustering methods to compare",
)
@PURITY_OPTION
@config_options
@writer_options
def sweep_cmd(
    workdir: Path,
    labels_dir: Path,
    layers: str | None,
    methods: str,
    min_purity: float | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Compare layers x clustering methods against ground truth (paper Tables 3-5); write sweep/tables.md."""
    from roadparse.stages import sweep

    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        result = sweep.run(
            workspace,
            settings,
            labels_dir,
            layers=_parse_layers(layers),
            methods=[m.strip() for m in methods.split(",") if m.strip()],
            min_purity=min_purity,
        )
    except ValueError as exc:
        fail(str(exc))
    click.echo(result["tables"], nl=False)
    click.echo(
        f"written: {workspace.root / 'sweep' / 'tables.md'}, {workspace.root / 'sweep' / 'results.json'}"
    )
