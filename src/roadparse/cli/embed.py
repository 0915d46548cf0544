"""CLI for the embed stage: ``roadparse embed WORKDIR``."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import (
    config_options,
    fail,
    open_workspace,
    resolve_settings,
    writer_options,
)


@click.command("embed")
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--encoder", default=None, help="encoder id/path or efficientnet-lite0 (same as --set embed.encoder=...)")
@click.option("--layer", "layers", type=int, multiple=True, help="layer to keep (repeatable; same as --set embed.layers=[...])")
@click.option("--device", default=None, help="torch device: auto, cpu, cuda, cuda:1 ...")
@click.option("--list-encoders", is_flag=True, help="list the known encoders and exit")
@config_options
@writer_options
def embed_cmd(workdir: Path | None, encoder: str | None, layers: tuple[int, ...], device: str | None, list_encoders: bool,
              config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Embed every mask crop of WORKDIR (after `roadparse masks`) with DINOv2 / DINOv3 / ResNet / EfficientNet-Lite0.

    Writes WORKDIR/embed/features_layer<L>.npy and index.parquet; an interrupted run resumes.
    """
    if list_encoders:
        from roadparse.models.encoders import list_encoders as known

        for name, description in known().items():
            click.echo(f"{name:<45} {description}")
        return
    if workdir is None:
        raise click.UsageError("missing argument WORKDIR")
    extra = list(overrides)
    if encoder is not None:
        extra.append(f"embed.encoder={encoder}")
    if layers:
        extra.append(f"embed.layers=[{', '.join(str(layer) for layer in layers)}]")
    if device is not None:
        extra.append(f"embed.device={device}")
    settings = resolve_settings(config_path, tuple(extra), workdir)
    workspace = open_workspace(workdir, settings)
    from roadparse.artifacts import stage_summary
    from roadparse.stages import embed

    try:
        manifest = embed.run(workspace, settings)
    except ValueError as exc:
        fail(str(exc))
        return
    summary = stage_summary(manifest, "embed")
    dims = ", ".join(f"layer {layer}: {dim}-d" for layer, dim in summary.get("dims", {}).items())
    click.echo(f"embedded {summary['masks']} masks from {summary['tiles']} tiles ({dims}); "
               f"{summary['failed']} tile(s) failed -> {workspace.root / 'embed'}")
