"""The run report: one self-contained HTML page (images inlined) a person reads at a glance."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from roadparse.artifacts import Tile, tile_ground_truth
from roadparse.io.images import read_image
from roadparse.io.labels import ClassSet, read_label_png
from roadparse.metrics import weakest_class
from roadparse.workspace import Workspace, atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1280px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}td,th{border:1px solid #ccc;padding:.25rem .55rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.best{font-weight:700;background:#e8f5e9}.flag{color:#b00020;font-weight:600}.note{color:#555;font-size:.92rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.5rem}
figure{margin:0}figcaption{font-size:.8rem;color:#444;text-align:center}
img{max-width:100%;image-rendering:auto;border:1px solid #ddd}
.legend span{display:inline-block;margin-right:1rem}.sw{display:inline-block;width:14px;height:14px;vertical-align:middle;border:1px solid #888;margin-right:.3rem}
pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.8rem}
"""


def image_data_uri(image: np.ndarray, max_side: int = 320, quality: int = 85) -> str:
    """Returns a JPEG data URI of an (H, W, 3) uint8 image scaled to at most ``max_side``."""
    pil = Image.fromarray(image)
    scale = max_side / max(pil.size)
    if scale < 1:
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def overlay(image: np.ndarray, label: np.ndarray, classes: ClassSet, alpha: float = 0.55) -> np.ndarray:
    """Returns the image blended with the class colours of ``label`` (ignore pixels left as they are)."""
    colours = classes.colorize(label).astype(np.float32)
    blend = image.astype(np.float32) * (1 - alpha) + colours * alpha
    blend[label == 255] = image[label == 255]
    return blend.astype(np.uint8)


def metrics_table(rows: dict[str, dict[str, Any]], classes: ClassSet) -> str:
    """Returns an HTML table in the paper's shape (IoU per class, mIoU, PA); the best mIoU row is bold."""
    if not rows:
        return "<p class='note'>No labelled dev set: no metrics.</p>"
    best = max(rows, key=lambda key: rows[key]["scores"]["miou"])
    head = "".join(f"<th>{html.escape(name)}</th>" for name in classes.names)
    out = [f"<table><tr><th>labels</th>{head}<th>mIoU</th><th>PA</th><th>unlabelled</th></tr>"]
    for title, result in rows.items():
        s = result["scores"]
        cells = "".join("<td>–</td>" if s["iou"].get(n) is None else f"<td>{s['iou'][n]:.2f}</td>" for n in classes.names)
        css = " class='best'" if title == best else ""
        out.append(
            f"<tr{css}><td>{html.escape(title)}</td>{cells}<td>{s['miou']:.2f}</td>"
            f"<td>{s['pixel_accuracy']:.2f}</td><td>{s['unlabelled']:.2f}</td></tr>"
        )
    return "".join(out) + "</table>"


def confusion_plot(confusion: list[list[int]], classes: ClassSet, title: str) -> str:
    """Returns an <img> of a row-normalised confusion matrix (ground truth rows, prediction columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(confusion, dtype=np.float64)  # rows predicted (+unlabelled), cols gt
    gt_rows = conf.T  # (C, C+1): gt x predicted
    norm = gt_rows / np.maximum(gt_rows.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    pred_names = [*classes.names, "unlabelled"]
    ax.set_xticks(range(len(pred_names)), pred_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes.names)), classes.names, fontsize=8)
    for (i, j), value in np.ndenumerate(norm):
        if value >= 0.005:
            ax.text(j, i, f"{value * 100:.0f}", ha="center", va="center", fontsize=7, color="white" if value > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"<img alt='confusion matrix' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _legend(classes: ClassSet) -> str:
    items = "".join(
        f"<span><i class='sw' style='background:rgb{tuple(color)}'></i>{html.escape(name)}</span>"
        for name, color in zip(classes.names, classes.colors, strict=True)
    )
    return f"<p class='legend'>{items}<span><i class='sw' style='background:rgb(40,40,40)'></i>unlabelled (255)</span></p>"


def sample_tiles_html(
    tiles: list[Tile], label_dirs: dict[str, Path], gt_dir: Path | None, classes: ClassSet, n: int = 4
) -> str:
    """Returns rows of tile | ground truth | each label set, as overlays, for ``n`` sample tiles."""
    rows = []
    step = max(1, len(tiles) // n)
    for tile in tiles[::step][:n]:
        image = read_image(tile.path)
        figures = [("tile", image)]
        if gt_dir is not None:
            figures.append(("ground truth", overlay(image, tile_ground_truth(tile, gt_dir), classes)))
        for title, folder in label_dirs.items():
            path = folder / f"{tile.id}.png"
            if path.exists():
                figures.append((title, overlay(image, read_label_png(path), classes)))
        cells = "".join(
            f"<figure><img alt='{html.escape(t)}' src='{image_data_uri(a, 300)}'><figcaption>{html.escape(t)}</figcaption></figure>"
            for t, a in figures
        )
        rows.append(f"<h3>{html.escape(tile.id)}</h3><div class='grid'>{cells}</div>")
    return "".join(rows)


def environment_summary(env: dict[str, Any] | None) -> str:
    """Returns one line of a manifest's ``environment``: CPU, the numeric packages' versions, BLAS kernels and
    threads (figures can move across machines: a stage computed elsewhere shows here); "—" for older manifests."""
    if not env:
        return "—"
    packages = env.get("packages", {})
    parts = [str(env.get("cpu") or env.get("machine") or "?")]
    parts += [f"{name} {packages[name]}" for name in ("numpy", "scipy", "scikit-learn", "torch") if name in packages]
    parts += [f"{pool.get('internal_api')} {pool.get('version')} {pool.get('architecture') or ''} ×{pool.get('num_threads')}".replace("  ", " ")
              for pool in env.get("blas", [])]
    if "torch_threads" in env:
        parts.append(f"torch ×{env['torch_threads']}")
    return " · ".join(parts)


def computed_on(manifest: Any) -> str:
    """Returns the "computed on" cell of a stage: the driver's environment, and each distinct environment of
    the Ray workers that computed its items when there were any ("workers: ...")."""
    line = environment_summary(manifest.get("environment"))
    workers = [environment_summary(env) for env in manifest.get("worker_environments", [])]
    distinct = list(dict.fromkeys(workers))
    return line if not distinct else f"{line}; workers: {' | '.join(distinct)}"


def stage_table(workspace: Workspace, seconds: dict[str, float]) -> str:
    """Returns a table of every finished stage: the wall time of the run that produced it (a stage
    skipped as complete this time keeps its own), items, failures and its summary counts."""
    out = ["<table><tr><th>stage</th><th>seconds to produce</th><th>items</th><th>failed</th><th>summary</th><th>computed on</th></tr>"]
    for stage in ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain"):
        manifest = workspace.read_manifest(stage)
        if manifest is None:
            continue
        summary = {k: v for k, v in manifest.get("summary", {}).items() if k not in ("items", "failed") and not isinstance(v, dict | list)}
        text = ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items())
        secs = manifest.get("seconds", seconds.get(stage, 0.0))
        out.append(
            f"<tr><td>{stage}</td><td>{secs:.1f}</td><td>{manifest['summary'].get('items', 0)}</td>"
            f"<td>{manifest['summary'].get('failed', 0)}</td><td>{html.escape(text)}</td>"
            f"<td>{html.escape(computed_on(manifest))}</td></tr>"
        )
    return "".join(out) + "</table>"


def write_report(
    path: Path,
    *,
    workspace: Workspace,
    classes: ClassSet,
    metrics: dict[str, dict[str, Any]],
    seconds: dict[str, float],
    sample_tiles: list[Tile],
    label_dirs: dict[str, Path],
    gt_dir: Path | None,
    settings_yaml: str,
    merge_map: dict[str, Any] | None,
    gallery_html: str,
    notes: list[str],
    verdict: str | None = None,
    flags: list[str] | None = None,
    measurements: str | None = None,
) -> Path:
    """Writes the self-contained ``report.html`` at ``path`` (atomically) and returns it.

    ``verdict`` (the self-training stage's sentence on which labels the run hands on) and ``flags``
    (classes a round lost) are shown above the results table; ``measurements`` (an HTML fragment of
    :func:`roadparse.stages.export.measure.measurements_html`) gets its own section.
    """
    # the confusion of the best labels (the run's model is its best round)
    best = max(metrics, key=lambda title: metrics[title]["scores"]["miou"]) if metrics else None
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>roadparse report</title><style>{_CSS}</style></head><body>",
        "<h1>roadparse run report</h1>",
        f"<p class='note'>Work directory: {html.escape(str(workspace.root))}</p>",
        "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
        "<h2>Results on the labelled dev split</h2>",
        f"<p class='verdict'><b>{html.escape(verdict)}</b></p>" if verdict else "",
        "".join(f"<p class='flag'>&#9888; {html.escape(flag)}</p>" for flag in flags or []),
        "<p class='note'>IoU per class, mIoU and pixel accuracy (%), from pixel counts summed over all dev tiles; "
        "unlabelled pixels (255: discarded clusters, area filter) count as errors.</p>",
        metrics_table(metrics, classes),
        "".join(
            f"<p class='note weakest'>{html.escape(title)}: {html.escape(weakest_class(result, classes.names))}.</p>"
            for title, result in metrics.items()
        ),
        "<h2>Stages</h2>",
        stage_table(workspace, seconds),
    ]
    if best is not None:
        parts += ["<h2>Confusion matrix</h2>", confusion_plot(metrics[best]["confusion"], classes, f"{best} (best mIoU), % of each ground-truth class")]
    if measurements is not None:
        parts += ["<h2>Measurements of the dev frames</h2>",
                  "<p class='note'>The dev frames predicted whole with the run's model and exported "
                  "(<code>predictions/survey.gpkg</code>): what road engineers take away.</p>", measurements]
    parts += ["<h2>Sample dev tiles</h2>", _legend(classes), sample_tiles_html(sample_tiles, label_dirs, gt_dir, classes)]
    if merge_map is not None:
        parts += ["<h2>Merge map</h2>", f"<pre>{html.escape(json.dumps(merge_map, indent=1))}</pre>"]
    parts += ["<h2>Cluster gallery</h2>", gallery_html]
    parts += ["<h2>Settings</h2>", f"<pre>{html.escape(settings_yaml)}</pre>", "</body></html>"]
    atomic_write_text(path, "\n".join(parts))
    return path
