"""CLI for ``roadparse export``: GIS layers and measurements, or COCO annotations."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from roadparse.cli.common import fail


@click.command("export")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["gpkg", "geojson", "shp", "coco"]), default="gpkg", show_default=True,
              help="gpkg: one GeoPackage, a layer per class; geojson / shp: a folder with a file per layer; "
                   "coco: COCO instances JSON (RLE)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output file (gpkg, coco) or folder (geojson, shp); default: inside SOURCE")
@click.option("--workdir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="the work directory whose roi tiles were predicted: tiles are joined into their frames")
@click.option("--gsd-cm", type=float, default=None, help="frame pixel size in cm for inputs without a CRS (default: the --workdir tiles' GSD, else predict's; "
                   "resampled roi tiles: divided by their scale); coco: of label PNGs that do not know theirs")
@click.option("--simplify-cm", type=float, default=1.0, show_default=True, help="simplification tolerance in cm")
@click.option("--min-area-m2", type=float, default=None,
              help="leave out regions smaller than this (default: 0.001 for layers; coco: the mask generator's area "
                   "filter, masks.min_mask_area_cm2, 187.5 cm² = 0.01875 m²)")
@click.option("--linear", "linear", multiple=True, metavar="CLASS",
              help="class that also gets centre-lines (repeatable; default: crack_sealing, white_marking, yellow_marking)")
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="classes YAML (default: the classes the predictions name, else the built-in ones)")
def export_cmd(source: Path, fmt: Literal["gpkg", "geojson", "shp", "coco"], out: Path | None, workdir: Path | None, gsd_cm: float | None,
               simplify_cm: float, min_area_m2: float | None, linear: tuple[str, ...], classes_path: str | None) -> None:
    """Export SOURCE (a `roadparse predict` folder; for coco also a work directory's pseudo-labels
    or a folder of label PNGs) as GIS layers with measurements, or as COCO annotations.

    Layers: <class> polygons (class, area_m2, frame, tile, model, run, confidence, pixels) and
    <class>_centreline lines (length_m, width_cm). Measurements (m² per class, m of sealing and
    marking, cone count) go to measurements.{json,html} and measurements_{frames,survey}.csv
    beside the layers; survey totals of georeferenced frames count shared ground once.
    Georeferenced inputs (GeoTIFF, drone JPEGs with GPS) keep their CRS in gpkg / shp, and
    geojson is in WGS84; others are in metres from the frame's top-left corner (gpkg / shp
    with a local engineering CRS; geojson refused). Every layer gets a QGIS style in its
    class colour (.qml files; in a gpkg, its layer_styles table).

    COCO of a work directory: one image per frame, annotations in the frame's pixels (tiles
    resampled by roi.target_gsd_cm mapped back), area_m2 from the frame's GSD.
    """
    from roadparse.stages.export.run import (
        MIN_LAYER_AREA_M2,
        default_output,
        export_coco,
        export_vectors,
    )
    from roadparse.stages.export.vectors import LINEAR_CLASSES

    out = out or default_output(source, fmt)
    try:
        if fmt == "coco":
            result = export_coco(source, out, classes_path, min_area_m2=min_area_m2, gsd_cm=gsd_cm)
            click.echo(f"{result['annotations']} instance(s) in {result['images']} image(s) → {out} "
                       f"({result['left_out']} region(s) under {result['min_area_m2']:g} m² left out)")
            return
        result = export_vectors(source, out, fmt, workdir=workdir, gsd_cm=gsd_cm, simplify_cm=simplify_cm,
                                min_area_m2=MIN_LAYER_AREA_M2 if min_area_m2 is None else min_area_m2,
                                linear_classes=linear or LINEAR_CLASSES, classes_path=classes_path)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
        return
    layers = ", ".join(f"{name} ({count})" for name, count in result["layers"].items())
    click.echo(f"{result['frames']} frame(s) → {out}: {layers}")
