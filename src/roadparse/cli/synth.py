"""CLI for the synthetic drone-road dataset: ``roadparse synth OUT``."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click


@click.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=8, show_default=True, help="number of frames")
@click.option("--width", type=click.IntRange(min=16), default=2400, show_default=True, help="frame width in pixels")
@click.option("--height", type=click.IntRange(min=16), default=1600, show_default=True, help="frame height in pixels")
@click.option("--full-size", is_flag=True, help="full 42-megapixel frames, 7952x5304 (overrides --width/--height)")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed (same seed: same labels)")
@click.option("--dev-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.25, show_default=True,
              help="share of frames in the dev split")
@click.option("--gsd-cm", type=click.FloatRange(min=0.01), default=None,
              help="ground sampling distance in cm/px [default: 0.25 for highway (the paper's, 40 m), 0.5 for urban]")
@click.option("--style", type=click.Choice(["highway", "urban"]), default="highway", show_default=True,
              help="synthetic family: highway (the demo's) or urban (streets; never used to choose settings)")
@click.option("--tile-size", type=click.IntRange(min=16), default=800, show_default=True, help="tile side in pixels")
@click.option("--corridor", is_flag=True,
              help="instead: two georeferenced surveys (GeoTIFF frames, EPSG:32633) of one road corridor along a known "
                   "centreline, the second with planted changes, and truth.json (see docs/reports.md)")
@click.option("--length-m", type=click.FloatRange(min=30.0), default=40.0, show_default=True,
              help="corridor length (with --corridor; --gsd-cm default 2.5 there)")
def synth_cmd(
    out_dir: Path, n_frames: int, width: int, height: int, full_size: bool, seed: int,
    dev_fraction: float, gsd_cm: float | None, tile_size: int, style: str, corridor: bool, length_m: float,
) -> None:
    """Generate a synthetic drone-road dataset with exact ground truth into OUT_DIR."""
    from roadparse.synth.dataset import FULL_SIZE, generate_dataset

    if corridor:
        from roadparse.synth.corridor_files import generate_corridor

        truth = generate_corridor(out_dir, seed=seed, length_m=length_m, gsd_cm=gsd_cm or 2.5)
        click.echo(f"wrote surveys a ({len(truth['frames']['a']['chainage_m'])} frames) and b "
                   f"({len(truth['frames']['b']['chainage_m'])} frames) of a {length_m:g} m corridor, "
                   f"centreline.gpkg and truth.json to {out_dir}")
        return

    if full_size:
        width, height = FULL_SIZE
    started = time.perf_counter()
    summary = generate_dataset(
        out_dir, n_frames=n_frames, width=width, height=height, seed=seed,
        dev_fraction=dev_fraction, gsd_cm=gsd_cm, tile_size=tile_size, style=style,
        command=shlex.join(["roadparse", *sys.argv[1:]]) if sys.argv[1:2] == ["synth"] else None,
    )
    click.echo(
        f"wrote {summary['frames']} frames ({style}, {width}x{height} px, {summary['gsd_cm']} cm/px) and "
        f"{summary['tiles']} tiles of {tile_size} px to {out_dir} "
        f"[train {summary['train']}, dev {summary['dev']}] in {time.perf_counter() - started:.1f} s"
    )
