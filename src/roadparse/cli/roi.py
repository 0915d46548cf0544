"""CLI for the roi stage: ``roadparse roi FRAMES WORKDIR``."""

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


@click.command("roi")
@click.argument("frames", type=click.Path(exists=True, path_type=Path))
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["detector", "offline", "none"]),
    default=None,
    help="shortcut for --set roi.mode=...: detector (Grounding DINO + CLIP, paper), offline (no weights), none (whole frames)",
)
@config_options
@writer_options
def roi_cmd(
    frames: Path,
    workdir: Path,
    mode: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Find the road in FRAMES (a folder of images or one image) and cut it into tiles in WORKDIR/roi.

    Frames are downscaled to long side 1024 for detection; the road boxes are cut from
    the full-resolution frame into 800x800 tiles (settings roi.*). Detector and filter
    models are Hugging Face ids or local folders (roi.detector, roi.filter).
    """
    from roadparse.artifacts import stage_summary
    from roadparse.io.images import ImageReadError, scan_images
    from roadparse.models import ModelLoadError
    from roadparse.stages import roi

    if mode is not None:
        overrides = (*overrides, f"roi.mode={mode}")
    settings = resolve_settings(config_path, overrides, workdir)
    try:
        listing = scan_images(frames)
    except ImageReadError as exc:
        fail(str(exc))
    frame_paths = listing.images
    if not frame_paths:
        fail(f"{frames}: no images found (looked for .jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp)")
    workspace = open_workspace(workdir, settings)
    try:
        manifest = roi.run(workspace, settings, frame_paths, skipped=listing.skipped)
    except (ModelLoadError, ValueError) as exc:
        fail(str(exc))
    summary = stage_summary(manifest, "roi")
    click.echo(
        f"roi: {summary['frames']} frames -> {summary['tiles']} tiles in {workdir / 'roi' / 'tiles'}; "
        f"{len(summary['frames_without_road'])} without road, {summary['failed']} failed"
        + (f", {len(summary['skipped'])} skipped" if summary.get("skipped") else "")
    )
    for frame_id, problem in sorted(summary["problems"].items()):
        click.echo(f"  {frame_id}: {problem}", err=True)
