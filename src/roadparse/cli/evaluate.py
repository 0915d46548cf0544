"""``roadparse evaluate PRED_DIR GT_DIR``: IoU per class, mIoU and pixel accuracy."""

from __future__ import annotations

from pathlib import Path

import click

from roadparse.cli.common import config_options, fail, resolve_settings


@click.command("evaluate")
@click.argument("pred_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("gt_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="classes file (default: the settings' `classes`, else the built-in road classes)")
@click.option("--matching", type=click.Choice(["none", "hungarian", "majority"]), default=None,
              help="ids are classes (none) or clusters matched to classes one-to-one / many-to-one "
              "(default: evaluate.matching)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write metrics JSON here (a .md table is written beside it)")
@config_options
def evaluate_cmd(pred_dir: Path, gt_dir: Path, classes_path: Path | None, matching: str | None,
                 out_path: Path | None, config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Compare label PNGs in PRED_DIR with ground truth in GT_DIR (matched by file name).

    Prints IoU per class, mIoU and pixel accuracy from pixel counts summed over the set.
    Ground-truth pixels equal to evaluate.ignore_index are not scored.
    """
    from roadparse.stages.evaluate import evaluate_dirs

    settings = resolve_settings(config_path, overrides)
    try:
        result = evaluate_dirs(
            pred_dir, gt_dir, classes_path=classes_path or settings.classes,
            matching=matching or settings.evaluate.matching,
            ignore_index=settings.evaluate.ignore_index, out_path=out_path,
        )
    except ValueError as exc:
        fail(str(exc))
        return
    click.echo(result["markdown"], nl=False)
