"""Evaluation of label PNG folders against ground truth, written as JSON + markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadparse.io.labels import load_classes, read_label_png
from roadparse.metrics import evaluate_pairs, markdown_table
from roadparse.workspace import atomic_write_json, atomic_write_text

_PRED_SUFFIXES = ("", "_label", "_pred")


def _find_prediction(pred_dir: Path, stem: str) -> Path | None:
    for suffix in _PRED_SUFFIXES:
        candidate = pred_dir / f"{stem}{suffix}.png"
        if candidate.exists() or candidate.is_symlink():  # a broken link is reported when read
            return candidate
    return None


def evaluate_dirs(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    classes_path: str | Path | None = None,
    matching: str = "none",
    ignore_index: int = 255,
    out_path: str | Path | None = None,
) -> dict[str, Any]:
    """Returns metrics of every ground-truth PNG in ``gt_dir`` against ``pred_dir/<same name>.png``.

    Predictions may also be named ``<name>_label.png``. The result holds the scores, the
    confusion matrix, the matching used and a markdown table; with ``out_path`` it is
    written as JSON there and the table as ``<out_path>.md``.

    Raises:
        ValueError: no ground truth, missing predictions (listed), mismatched sizes or
            unknown ids (naming the file).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    classes = load_classes(classes_path)
    gt_files = sorted(gt_dir.glob("*.png"))
    if not gt_files:
        raise ValueError(f"{gt_dir}: no ground-truth .png files")
    missing = [path.name for path in gt_files if _find_prediction(pred_dir, path.stem) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{pred_dir}: no prediction for {len(missing)} ground-truth file(s): {shown}")
    pairs = []
    for gt_path in gt_files:
        pred_path = _find_prediction(pred_dir, gt_path.stem)
        assert pred_path is not None
        pairs.append((pred_path.name, read_label_png(pred_path), read_label_png(gt_path)))
    result = evaluate_pairs(pairs, classes.names, matching=matching, ignore_index=ignore_index)
    title = {"none": "prediction", "hungarian": "clusters, Hungarian one-to-one", "majority": "clusters, majority many-to-one"}[matching]
    result["markdown"] = (
        f"Evaluated {len(pairs)} images, {result['scores']['pixels']} labelled pixels "
        f"(matching: {matching}).\n\n" + markdown_table({title: result["scores"]}, classes.names)
    )
    if out_path is not None:
        out_path = Path(out_path)
        atomic_write_json(out_path, {k: v for k, v in result.items() if k != "markdown"})
        atomic_write_text(out_path.with_suffix(".md"), result["markdown"])
    return result

