"""``roadparse predict MODEL INPUTS --out DIR``: a trained model applied to tiles and frames."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, fail, resolve_settings


@click.command("predict")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="output folder: <stem>_label.png, <stem>_confidence.png, <stem>_overlay.jpg, "
                   "<stem>_label.tif (+ world files) when georeferenced, areas.csv, summary.json")
@click.option("--gsd-cm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="GSD (cm/px) of inputs without a GeoTIFF transform or drone EXIF (= --set predict.gsd_cm=...)")
@config_options
def predict_cmd(model: Path, inputs: tuple[Path, ...], out_dir: Path, gsd_cm: float | None,
                config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Label images with a trained MODEL (a model folder or a .pt checkpoint).

    INPUTS are image files or folders of tiles or whole frames of any size; GeoTIFFs keep
    their CRS and transform; drone JPEGs with GPS in EXIF are georeferenced approximately
    (nadir footprint in UTM; frames over 10° from nadir are not). Each input's GSD comes
    from its GeoTIFF transform, its drone EXIF, else --gsd-cm / predict.gsd_cm; an input
    whose GSD differs from the model's working GSD by more than 10 % is resampled to it for
    the model and its outputs come back at the input's size (predict.resample: auto | never).
    Settings: predict.window_m (or predict.window in pixels), predict.overlap,
    predict.batch_size, predict.gsd_cm, predict.resample, predict.device.
    """
    from roadparse.models import ModelLoadError
    from roadparse.stages.predict import predict_files

    if gsd_cm is not None:
        overrides = (*overrides, f"predict.gsd_cm={gsd_cm!r}")
    settings = resolve_settings(config_path, overrides)
    try:
        summary = predict_files(model, list(inputs), out_dir, settings)
    except (ValueError, ModelLoadError) as exc:
        fail(str(exc))
        return
    click.echo(f"predicted {len(summary['images'])} image(s) into {out_dir}"
               + (f"; {len(summary['failed'])} failed (see summary.json)" if summary["failed"] else "")
               + (f"; {len(summary['skipped'])} skipped" if summary["skipped"] else ""))
    for path, reason in {**summary["failed"], **summary["skipped"]}.items():
        click.echo(f"  {path}: {reason}", err=True)
    if summary["failed"]:
        raise SystemExit(1)
