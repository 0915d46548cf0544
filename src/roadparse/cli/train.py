"""CLI for self-training (``roadparse train``) and prediction (``roadparse predict``)."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, fail, open_workspace, resolve_settings


@click.command("train")
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dev-labels", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="folder of frame ground-truth label PNGs (<frame stem>.png): stop rounds by dev mIoU")
@click.option("--dev-tiles", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="text file of dev-split tile ids, one per line (default: every tile with ground truth)")
@config_options
def train_cmd(workdir: Path, dev_labels: Path | None, dev_tiles: Path | None,
              config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Self-train a segmenter on WORKDIR's pseudo-labels: teacher, relabel, student, ...

    Rounds stop after train.rounds or when a round stops improving (dev mIoU with
    --dev-labels, else agreement between successive rounds' labels). Rerun to resume.
    Small CPU runs: lower train.iterations and raise train.lr, e.g.
    --set train.iterations=300 --set train.lr=0.001 --set train.pretrained=false.
    Several GPUs: torchrun --nproc_per_node N "$(which roadparse)" train WORKDIR.
    """
    from roadparse.models import ModelLoadError
    from roadparse.stages import selftrain

    settings = resolve_settings(config_path, overrides, workdir)
    workspace = open_workspace(workdir, settings)
    tile_ids = None
    if dev_tiles is not None:
        tile_ids = [line.strip() for line in dev_tiles.read_text().splitlines() if line.strip()]
    try:
        manifest = selftrain.run(workspace, settings, dev_labels=dev_labels, dev_tiles=tile_ids, announce=click.echo)
    except (ValueError, ModelLoadError) as exc:
        fail(str(exc))
        return
    summary = manifest["summary"]
    if "stage" in manifest:  # rank 0 (or a single process) reports
        model = workdir / "train" / summary["model"] if summary.get("model") else "none (the pseudo-labels are best)"
        click.echo(f"self-training: {summary['rounds_run']} round(s), stopped: {summary['stopped_by']}; best model: {model}")
        click.echo(summary_lines(summary))


def summary_lines(summary: dict) -> str:
    """Returns the verdict of a finished self-training stage and its per-class flags, for the terminal."""
    lines = [summary.get("verdict") or ""]
    for round_name, names in (summary.get("lost_classes") or {}).items():
        lines.append(f"WARNING: round {round_name} lost classes the pseudo-labels had (dev IoU >= 50 -> < 25): {', '.join(names)}")
    return "\n".join(line for line in lines if line)


@click.command("predict")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="output folder: <stem>_label.png, <stem>_overlay.jpg, <stem>_label.tif, areas.csv, summary.json")
@config_options
def predict_cmd(model: Path, inputs: tuple[Path, ...], out_dir: Path,
                config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Label images with a trained MODEL (a model folder or a .pt checkpoint).

    INPUTS are image files or folders of tiles or whole frames of any size; GeoTIFFs keep
    their CRS and transform. Settings: predict.window, predict.overlap, predict.batch_size,
    predict.gsd_cm (for m² areas when the input has no projected CRS), predict.device.
    """
    from roadparse.models import ModelLoadError
    from roadparse.predict import predict_files

    settings = resolve_settings(config_path, overrides)
    try:
        summary = predict_files(model, list(inputs), out_dir, settings)
    except (ValueError, ModelLoadError) as exc:
        fail(str(exc))
        return
    click.echo(f"predicted {len(summary['images'])} image(s) into {out_dir}"
               + (f"; {len(summary['failed'])} failed (see summary.json)" if summary["failed"] else ""))
    if summary["failed"]:
        raise SystemExit(1)
