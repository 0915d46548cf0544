"""Stage 5: teacher-student self-training on pseudo-labels (paper §3.3, §4.5).

Round 1 trains a teacher on the pseudo-labels; every round then relabels all training
tiles with its model (sliding window over the full tile, argmax) and the next round
trains a fresh student of the same kind on those labels. The pseudo-labels are round 0
of every comparison (``stages.selftrain.selection``): with a dev label folder, rounds stop when a
round does not beat the best so far (round 0 included) or loses a class the pseudo-labels
had, and the best round may be 0 (no model: the run's labels are the pseudo-labels);
without one, when successive rounds' labels agree on at least ``1 - selftrain.min_improvement``
of the pixels. The manifest records which rule stopped it and a plain verdict.
``selftrain.iterations: auto`` sizes each round from the data (``stages.selftrain.budget``).

Layout: ``selftrain/round_<r>/{checkpoints/last.pt, model/, labels/<tile_id>.png, metrics.json}``.
Each finished round is journalled, so a rerun skips finished rounds and resumes an
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, final

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from roadparse.artifacts import Tile, list_tiles, pseudo_label_dir
from roadparse.config import SelftrainSettings, Settings, dump_settings
from roadparse.dev_split import score_label_dir
from roadparse.io.images import read_image
from roadparse.io.labels import (
    IGNORE_INDEX,
    ClassSet,
    load_classes,
    read_label_png,
    write_label_png,
)
from roadparse.io.samples import split_alpha
from roadparse.metrics import confusion_matrix, scores
from roadparse.models.segmenters import (
    build_segmenter,
    load_segmenter,
    save_segmenter,
    segmenter_record,
)
from roadparse.models.sliding_window import predict_image
from roadparse.stages.selftrain.budget import TrainingBudget, resolve_iterations, training_budget
from roadparse.stages.selftrain.dataset import TileLabelDataset
from roadparse.stages.selftrain.loop import (
    DistContext,
    distributed_context,
    resolve_optimizer,
    train_segmenter,
)
from roadparse.stages.selftrain.selection import best_round, lost_classes, stop_reason, verdict
from roadparse.stages.selftrain.thresholds import (
    class_thresholds,
    confidence_histograms,
    confident_labels,
    kept_shares,
    quantise_confidence,
)
from roadparse.workspace import (
    StageManifest,
    Workspace,
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    environment,
    git_sha,
)

log = logging.getLogger(__name__)

STAGE = "selftrain"


def label_fit(previous_dir: Path, current_dir: Path, tiles: list[Tile], class_names: tuple[str, ...]) -> dict[str, Any] | None:
    """Returns how well a round's labels reproduce the labels it was trained on, over the pixels labelled in both.

    ``agreement``: the share of those pixels whose label did not change (the stop rule without
    dev labels); ``iou``: per class, the IoU (%) between the two label sets (None: the class is in
    neither); ``miou``: their mean over the classes present. A class the model does not reproduce
    was either not learnt in the iterations given or labelled two ways for one look. None when no
    pixel is labelled in both.
    """
    n = len(class_names)
    confusion = np.zeros((n + 1, n), dtype=np.int64)
    for tile in tiles:
        before, after = previous_dir / f"{tile.id}.png", current_dir / f"{tile.id}.png"
        if not (before.is_file() and after.is_file()):
            continue
        trained_on, relabelled = read_label_png(before), read_label_png(after)
        # only the pixels labelled in both: the ones the round left unlabelled are not scored
        both = np.where(relabelled == IGNORE_INDEX, IGNORE_INDEX, trained_on)
        confusion += confusion_matrix(relabelled, both, n, n, IGNORE_INDEX)
    total = int(confusion.sum())
    if not total:
        return None
    fit = scores(confusion, class_names)
    iou = {name: None if value is None else round(value, 2) for name, value in fit["iou"].items()}
    return {"agreement": int(np.trace(confusion)) / total, "iou": iou, "miou": round(fit["miou"], 2)}


def dev_scores(labels_dir: Path, dev_tiles: list[Tile], dev_labels: Path, classes: ClassSet) -> dict[str, Any]:
    """Returns {iou, miou, pixel_accuracy} (in %) of the labels in ``labels_dir`` against dev ground truth.

    The confusion matrix is summed over all dev tiles; unlabelled (255) predictions count as errors.
    """
    return score_label_dir(labels_dir, dev_tiles, dev_labels, classes.names)["scores"]


def _next_round_labels(round_dir: Path, train: SelftrainSettings) -> Path:
    """Returns the folder of a round's labels the next round trains on: its confident labels when
    ``selftrain.relabel_confidence`` is set, else all of its labels."""
    return round_dir / ("confident_labels" if train.relabel_confidence > 0 else "labels")


def relabel_tiles(
    model: torch.nn.Module, tiles: list[Tile], labels_dir: Path, settings: Settings,
    device: torch.device, dist: DistContext, desc: str, confident_dir: Path | None = None, window: int | None = None,
) -> dict[str, Any] | None:
    """Writes ``labels_dir/<tile_id>.png``: the model's argmax over each full tile (padding = ignore).

    With ``confident_dir``, also writes each tile's confidence (probability of its label, uint8
    levels) to ``<round>/confidence/`` first (so a tile whose ``labels_dir`` file exists is
    complete), and once every tile is relabelled, ``confident_dir/<tile_id>.png``: the labels with
    pixels under their class's threshold unlabelled (``selftrain.relabel_confidence``, lowered per
    class by ``selftrain.relabel_class_quantile``). Tiles already relabelled (by an interrupted run of
    the same round) are skipped; under DDP each rank relabels its own share of the tiles.
    ``window``: the sliding-window side in pixels (default: ``predict`` settings at 0.25 cm/px).

    Returns:
        with ``confident_dir``, on rank 0: per-class ``thresholds`` and ``kept`` shares; else None.
    """
    mine = tiles[dist.rank :: dist.world_size]
    classes = load_classes(settings.classes)
    confidence_dir = labels_dir.parent / "confidence"
    model.eval()
    for tile in tqdm(mine, desc=desc, unit="tile", dynamic_ncols=True, disable=not dist.is_main):
        path = labels_dir / f"{tile.id}.png"
        if path.is_file():
            continue
        image, nodata = split_alpha(read_image(tile.path, keep_nodata=True))
        predicted = predict_image(
            model, image, window or settings.predict.window_pixels(None), settings.predict.overlap,
            settings.predict.batch_size, device,
            return_probabilities=confident_dir is not None, amp=settings.selftrain.amp,
        )
        labels, probabilities = predicted if isinstance(predicted, tuple) else (predicted, None)
        valid_w, valid_h = tile.valid
        labels[valid_h:] = IGNORE_INDEX
        labels[:, valid_w:] = IGNORE_INDEX
        if nodata is not None:  # the frame's no-data pixels are never labelled
            labels[nodata] = IGNORE_INDEX
        if probabilities is not None:
            with atomic_output(confidence_dir / f"{tile.id}.png") as tmp:
                Image.fromarray(quantise_confidence(probabilities.max(axis=0))).save(tmp, format="PNG")
        write_label_png(path, labels, classes)
    dist.barrier()
    if confident_dir is None or not dist.is_main:
        return None
    return _write_confident_labels(tiles, labels_dir, confidence_dir, confident_dir, settings.selftrain, classes)


def _write_confident_labels(
    tiles: list[Tile], labels_dir: Path, confidence_dir: Path, confident_dir: Path, train: SelftrainSettings, classes: ClassSet,
) -> dict[str, Any]:
    """Writes every tile's confident labels from its labels and confidence; returns thresholds and kept shares per class."""

    def read(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        return read_label_png(labels_dir / f"{tile.id}.png"), np.asarray(Image.open(confidence_dir / f"{tile.id}.png"))

    histograms = np.zeros((len(classes), 256), dtype=np.int64)
    for tile in tiles:
        histograms += confidence_histograms(*read(tile), len(classes))
    thresholds = class_thresholds(histograms, train.relabel_confidence, train.relabel_class_quantile)
    for tile in tiles:
        write_label_png(confident_dir / f"{tile.id}.png", confident_labels(*read(tile), thresholds), classes)
    kept = kept_shares(histograms, thresholds)
    return {
        "thresholds": {name: round(float(t), 4) for name, t in zip(classes.names, thresholds, strict=True)},
        "kept": {name: None if np.isnan(k) else round(float(k), 4) for name, k in zip(classes.names, kept, strict=True)},
    }


def _dev_tiles(tiles: list[Tile], dev_labels: Path | None, dev_tile_ids: list[str] | None) -> list[Tile]:
    if dev_labels is None:
        return []
    if dev_tile_ids is not None:
        wanted = set(dev_tile_ids)
        unknown = wanted - {tile.id for tile in tiles}
        if unknown:
            raise ValueError(f"dev tiles not found in the roi stage: {sorted(unknown)[:10]}")
        return [tile for tile in tiles if tile.id in wanted]
    chosen = [tile for tile in tiles if (dev_labels / f"{Path(tile.frame).stem}.png").is_file()]
    if not chosen:
        raise ValueError(f"{dev_labels}: no ground-truth label PNG (<frame stem>.png) for any tile's frame")
    return chosen


GSD_AGREEMENT = 0.05
"""Tiles whose GSDs all lie within this share of their median have one working GSD (the median)."""


def tiles_working_gsd(tiles: list[Tile], target_gsd_cm: float | None) -> float | None:
    """Returns the GSD (cm/px) of the pixels the models train on: ``roi.target_gsd_cm`` when set, else the
    tiles' GSD when they all agree within 5 %; None when they differ or a tile has none (a run from before GSDs)."""
    if target_gsd_cm is not None:
        return target_gsd_cm
    values = [tile.gsd_cm for tile in tiles]
    if not values or any(value is None for value in values):
        return None
    median = float(np.median(np.array(values, dtype=np.float64)))
    if any(abs(float(value) / median - 1.0) > GSD_AGREEMENT for value in values if value is not None):
        log.warning("tiles of GSDs %.3g-%.3g cm/px: the model records no working GSD (predict will not resample)",
                    min(v for v in values if v is not None), max(v for v in values if v is not None))
        return None
    return round(median, 6)


@dataclass(frozen=True)
class _Relabel:
    """How a round relabels the tiles: window side in pixels and the tiles' working GSD (recorded with the model)."""

    window: int
    gsd_cm: float | None


@final
class RankResult(TypedDict):
    """What :func:`run` returns on the other ranks of a distributed run (rank 0 writes the manifest)."""

    summary: dict[str, Any]


def run(
    workspace: Workspace,
    settings: Settings,
    dev_labels: Path | None = None,
    dev_tiles: list[str] | None = None,
    callback: Any = None,
    announce: Callable[[str], None] | None = None,
) -> StageManifest | RankResult:
    """Runs self-training rounds and returns the stage manifest (on ranks other than 0 of a
    distributed run: only its summary).

    Args:
        workspace: the run directory (needs finished ``roi`` and ``pseudolabel`` stages).
        settings: resolved settings (``selftrain``, ``predict`` for relabelling, ``classes``).
        dev_labels: optional folder of frame ground-truth PNGs (``<frame stem>.png``);
            enables the dev-mIoU stopping rule and the comparison with the pseudo-labels.
        dev_tiles: tile ids of the dev split (default: every tile whose frame has ground truth).
        callback: ``callback(iteration, loss)`` after each training step (tests use it to interrupt).
        announce: called with the training budget line before training starts (the CLI echoes it);
            default: logged.
    """
    pseudo = workspace.require_manifest("pseudolabel")
    tiles = list_tiles(workspace)
    classes = load_classes(settings.classes)
    dev_labels = Path(dev_labels) if dev_labels is not None else None
    dev = _dev_tiles(tiles, dev_labels, dev_tiles)
    dist, device = distributed_context(settings.selftrain.device)
    working_gsd = tiles_working_gsd(tiles, settings.roi.target_gsd_cm)
    window = settings.predict.window_pixels(working_gsd)  # predict.window_m at the tiles' GSD
    budget = training_budget(settings.selftrain, [t.size for t in tiles], len(classes), window, settings.predict.overlap)
    settings = settings.model_copy(update={"selftrain": resolve_iterations(settings.selftrain, budget)})
    if dist.is_main:
        (announce or log.info)(budget.describe())
    stage_settings = {
        # where and how fast it runs must not invalidate finished rounds or checkpoints
        "selftrain": settings.selftrain.identity(),
        "relabel": {"window": window, "overlap": settings.predict.overlap},
        "classes": list(classes.names),
    }
    inputs = {"pseudolabel": pseudo["fingerprint"], "dev_labels": str(dev_labels) if dev_labels else None,
              "dev_tiles": sorted(t.id for t in dev) or None}
    if not dist.is_main:
        dist.barrier()  # rank 0 prepares the journal first
    stage = workspace.begin(STAGE, stage_settings, inputs=inputs)
    if dist.is_main:
        if not stage.complete:
            _check_model_builds(settings.selftrain, len(classes))
            stage.start()
        dist.barrier()
    if stage.manifest is not None:  # finished with these settings and inputs
        return stage.manifest

    history: list[dict[str, Any]] = []
    previous_labels = pseudo_label_dir(workspace)
    if dev and dev_labels is not None:  # dev tiles come only with dev labels
        history.append({"round": 0, "dev": dev_scores(previous_labels, dev, dev_labels, classes)})
    stopped_by = None
    for round_index in range(1, settings.selftrain.rounds + 1):
        round_dir = stage.dir / f"round_{round_index}"
        item = f"round_{round_index}"
        if stage.item_done(item):
            metrics = stage.items()[item]
        else:
            metrics = _train_round(round_index, round_dir, previous_labels, tiles, dev, dev_labels,
                                   classes, settings, stage.fingerprint, device, dist, callback,
                                   _Relabel(window, working_gsd))
            metrics["lost_classes"] = lost_classes(history[0].get("dev") if history else None, metrics.get("dev"))
            metrics["stop"] = stop_reason(round_index, settings.selftrain.rounds, metrics, history,
                                          settings.selftrain.min_improvement)
            metrics = dist.broadcast(metrics)  # every rank takes rank 0's decision
            if dist.is_main:
                atomic_write_json(round_dir / "metrics.json", metrics)
                stage.record_item(item, metrics)
        history.append(metrics)
        previous_labels = _next_round_labels(round_dir, settings.selftrain)
        if metrics["stop"]:
            stopped_by = metrics["stop"]
            break
    summary = _summary(history, stopped_by, bool(dev), budget)
    if not dist.is_main:
        return {"summary": summary}
    log.info("self-training: %d round(s), stopped because %s. %s", summary["rounds_run"], stopped_by, summary["verdict"])
    return stage.finish(summary)


def _check_model_builds(train: SelftrainSettings, num_classes: int) -> None:
    """Builds the round model once and drops it, so that weights that cannot load (a mistyped backbone,
    weights not in the cache) fail before the stage claims its folder: a finished self-training is kept."""
    with torch.random.fork_rng(devices=[]):  # the rounds' initial weights do not depend on this build
        build_segmenter(train.architecture, train.backbone, max(1, num_classes), train.pretrained, train.encoder_weights)


def _summary(history: list[dict[str, Any]], stopped_by: str | None, has_dev: bool, budget: TrainingBudget) -> dict[str, Any]:
    """Returns the stage summary: rounds, stop, best round (0 = the pseudo-labels), its model and labels, verdict."""
    best = best_round(history)
    return {
        "rounds_run": sum(1 for m in history if m["round"] >= 1),
        "stopped_by": stopped_by,
        "stop_rule": "dev_miou" if has_dev else "label_agreement",
        "best_round": best,
        "model": f"round_{best}/model" if best >= 1 else None,
        "labels": f"{STAGE}/round_{best}/labels" if best >= 1 else "pseudolabel/labels",
        "verdict": verdict(history, best),
        "lost_classes": {str(m["round"]): m["lost_classes"] for m in history if m.get("lost_classes")} or None,
        "dev_miou": {str(m["round"]): m["dev"]["miou"] for m in history if m.get("dev")} or None,
        "budget": {"iterations": budget.iterations, "batch_size": budget.batch_size, "crops": budget.crops,
                   "tiles": budget.tiles, "classes": budget.classes, "relabel_windows": budget.relabel_windows,
                   "rule": budget.rule},
    }


def _train_round(
    round_index: int, round_dir: Path, source_labels: Path, tiles: list[Tile], dev: list[Tile],
    dev_labels: Path | None, classes: ClassSet, settings: Settings, run_fingerprint: str,
    device: torch.device, dist: DistContext, callback: Any, relabel: _Relabel,
) -> dict[str, Any]:
    """Trains one round's model on ``source_labels``, saves it (with the tiles' working GSD), relabels the
    tiles; returns its metrics."""
    train = settings.selftrain
    stamp = round_dir / ".fingerprint"
    if dist.is_main and round_dir.exists() and (not stamp.is_file() or stamp.read_text().strip() != run_fingerprint):
        shutil.rmtree(round_dir)  # left by a run with other settings or inputs
    dist.barrier()
    if dist.is_main:
        atomic_write_text(stamp, run_fingerprint)
    samples = [(t.path, source_labels / f"{t.id}.png") for t in tiles if (source_labels / f"{t.id}.png").is_file()]
    if len(samples) < len(tiles):
        log.warning("round %d: %d of %d tiles have no label in %s", round_index, len(tiles) - len(samples), len(tiles), source_labels)
    dataset = TileLabelDataset(samples, train.scale_range, train.crop_size, train.flip, cache_mb=train.cache_mb)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed + round_index)  # same initial weights on every rank and every rerun
        model = build_segmenter(train.architecture, train.backbone, len(classes), train.pretrained, train.encoder_weights)
    if round_index > 1 and train.student_init == "teacher":
        teacher_dir = round_dir.parent / f"round_{round_index - 1}" / "model"
        teacher, _ = load_segmenter(teacher_dir)
        model.load_state_dict(teacher.state_dict())
        log.info("round %d: student starts from the weights of %s", round_index, teacher_dir)
    meta = {
        "class_names": list(classes.names),
        "class_colors": [list(c) for c in classes.colors],
        "settings": dump_settings(settings),
        "git_sha": git_sha(),
        "environment": environment(),
        "seed": train.seed,
        "round": round_index,
        "fingerprint": run_fingerprint,
        "working_gsd_cm": relabel.gsd_cm,
    }
    summary = train_segmenter(
        model, dataset, train, round_dir / "checkpoints" / "last.pt", segmenter_record(model, meta),
        device, dist, callback, desc=f"round {round_index}",
    )
    if dist.is_main:
        save_segmenter(model, round_dir / "model", meta)
    labels_dir = round_dir / "labels"
    next_labels = _next_round_labels(round_dir, train)
    confident_dir = next_labels if next_labels != labels_dir else None
    relabelled = relabel_tiles(model, tiles, labels_dir, settings, device, dist, desc=f"relabel {round_index}",
                               confident_dir=confident_dir, window=relabel.window)
    optimizer, lr, decay = resolve_optimizer(train)
    fit = label_fit(source_labels, labels_dir, tiles, classes.names) if dist.is_main else None
    metrics: dict[str, Any] = {
        "round": round_index,
        "trained_on": str(source_labels),
        "samples": len(samples),
        "optimizer": {"name": optimizer, "lr": lr, "weight_decay": decay},
        "training": summary,
        "agreement": fit["agreement"] if fit else None,
        "fit": {"iou": fit["iou"], "miou": fit["miou"]} if fit else None,
        "dev": dev_scores(labels_dir, dev, dev_labels, classes) if dev and dev_labels and dist.is_main else None,
        "relabel": relabelled,
    }
    return metrics
