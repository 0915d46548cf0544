"""CLI for stage 4: ``roadparse cluster``, ``roadparse cluster suggest``, ``roadparse pseudolabel``, ``roadparse sweep``."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, fail, open_workspace, resolve_settings

_WORKDIR = click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
_LABELS = click.option(
    "--labels",
    "labels_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="ground-truth label PNGs (<frame stem>.png or <tile id>.png), used to NAME clusters only",
)
_PURITY = click.option(
    "--min-purity",
    type=click.FloatRange(0, 1),
    default=None,
    help="below this majority share a cluster is 'discard' (default: cluster.min_purity)",
)


class _DefaultRunGroup(click.Group):
    """``roadparse cluster WORKDIR`` runs the stage; ``roadparse cluster suggest WORKDIR`` names clusters."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("cluster", cls=_DefaultRunGroup)
def cluster_cmd() -> None:
    """Over-cluster the mask embeddings (paper: spectral, k=20) and write the gallery.

    \b
    roadparse cluster WORKDIR [--labels GT_DIR]       cluster, gallery (+ suggested merge map)
    roadparse cluster suggest WORKDIR --labels GT_DIR  suggest a merge map by majority vote
    roadparse cluster suggest WORKDIR --zero-shot MODEL  ... or by CLIP/SigLIP on typical crops
    """


@cluster_cmd.command("run")
@_WORKDIR
@_LABELS
@_PURITY
@config_options
def cluster_run_cmd(
    workdir: Path,
    labels_dir: Path | None,
    min_purity: float | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Cluster WORKDIR's embeddings; write assignments, the gallery and (with --labels) a suggested merge map."""
    from roadparse.stages import cluster

    if min_purity is not None:
        overrides = (*overrides, f"cluster.min_purity={min_purity}")
    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        manifest = cluster.run(workspace, settings, labels_dir=labels_dir)
    except ValueError as exc:
        fail(str(exc))
    sizes = manifest["summary"]["clustering"].get("sizes", [])
    click.echo(f"{manifest['summary']['masks']} masks in {len(sizes)} clusters (sizes {sizes})")
    click.echo(f"gallery: {workspace.root / 'cluster' / 'gallery' / 'index.html'}")
    suggested = workspace.root / "cluster" / cluster.SUGGESTED
    if suggested.exists():
        click.echo(f"suggested merge map: {suggested}")
    click.echo(
        f"next: write {workspace.root / settings.pseudolabel.merge_map}, then `roadparse pseudolabel {workdir}`"
    )


@cluster_cmd.command("suggest")
@_WORKDIR
@_LABELS
@_PURITY
@click.option(
    "--zero-shot",
    "zero_shot",
    default=None,
    metavar="MODEL",
    help="CLIP/SigLIP id or local path: name clusters from their typical crops",
)
@click.option("--device", default="auto", help="torch device for --zero-shot")
@config_options
def cluster_suggest_cmd(
    workdir: Path,
    labels_dir: Path | None,
    min_purity: float | None,
    zero_shot: str | None,
    device: str,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Suggest a merge map (cluster/merge_map.suggested.yaml) from ground truth or zero-shot scores."""
    from roadparse.models import ModelLoadError
    from roadparse.stages import cluster

    if (labels_dir is None) == (zero_shot is None):
        fail("give exactly one of --labels GT_DIR or --zero-shot MODEL")
    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        if labels_dir is not None:
            path, suggestions = cluster.suggest_by_majority(
                workspace, settings, labels_dir, min_purity=min_purity
            )
            cluster.write_gallery_safely(workspace, settings, suggestions)
        else:
            path, suggestions = cluster.suggest_by_zero_shot(
                workspace, settings, zero_shot, device=device, min_score=min_purity or 0.0
            )  # type: ignore[arg-type]
    except ModelLoadError as exc:
        fail(f"zero-shot naming skipped: {exc}")
    except ValueError as exc:
        fail(str(exc))
    for item in suggestions:
        click.echo(
            f"cluster {item['cluster']:>3}: {item['class']:<16} purity {item['purity']:.2f}  ({item['masks']} masks)"
        )
    click.echo(f"suggested merge map: {path}")
    click.echo(
        f"next: cp {path} {workspace.root / settings.pseudolabel.merge_map}, edit, then `roadparse pseudolabel {workdir}`"
    )


@click.command("pseudolabel")
@_WORKDIR
@click.option(
    "--merge-map",
    "merge_map",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="merge map YAML (default: WORKDIR/<pseudolabel.merge_map>)",
)
@config_options
def pseudolabel_cmd(
    workdir: Path, merge_map: Path | None, config_path: Path | None, overrides: tuple[str, ...]
) -> None:
    """Paint each tile's masks with their cluster's class (merge map); write pseudolabel/labels/*.png."""
    from roadparse.stages import pseudolabel

    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    try:
        manifest = pseudolabel.run(workspace, settings, merge_map_path=merge_map)
    except ValueError as exc:
        fail(str(exc))
    summary = manifest["summary"]
    click.echo(
        f"{summary['items']} tiles labelled ({summary['failed']} failed), {summary['unlabelled_share']:.1%} of pixels unlabelled"
    )
    click.echo(f"labels: {pseudolabel.labels_dir(workspace)}")


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
@_WORKDIR
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
@_PURITY
@config_options
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
