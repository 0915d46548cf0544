"""``roadparse predict``: a saved model applied to tiles and whole frames (sliding windows,
:mod:`roadparse.models.sliding_window`).

:func:`predict_files` applies a saved model to files and folders and writes, per input, a
palette label PNG, a colour overlay, a GeoTIFF for georeferenced inputs, and per-class areas.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from roadparse.config import PredictSettings, Settings
from roadparse.executor import ITEM_ERRORS, BatchFn, make_executor
from roadparse.io.geo import GEO_SUFFIXES, GeoReadError, read_geo_info
from roadparse.io.gsd import FrameGsd, frame_gsd
from roadparse.io.images import (
    bands_to_rgb_uint8,
    read_image,
    resample_image,
    scan_images,
    write_image,
)
from roadparse.io.labels import IGNORE_INDEX, ClassSet, load_classes, write_label_png
from roadparse.io.samples import nodata_pixels, sample_scale, split_alpha, with_alpha
from roadparse.models import resolve_device
from roadparse.models.segmenters import (
    MODEL_WEIGHTS,
    load_segmenter,
    read_segmenter_record,
    working_gsd_of,
)
from roadparse.models.sliding_window import labels_at_size, predict_image
from roadparse.storage import StorageError, folder_bytes, is_environment_error, storage_message
from roadparse.workspace import (
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    environment,
    fingerprint,
    git_sha,
    remove_stale_temporaries,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeoReference:
    """Where a raster lies on the ground: rasterio CRS and affine transform."""

    crs: Any
    transform: Any
    source: str = "geotiff"
    """where it came from: ``geotiff``, or ``exif`` (an approximate nadir footprint, see roadparse.io.georef)"""

    def pixel_area_m2(self) -> float | None:
        """Returns the ground area of one pixel in m², or None when the CRS is not projected."""
        if self.crs is None or not self.crs.is_projected:
            return None
        factor = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d) * factor**2


def read_input(path: Path, *, keep_nodata: bool = False) -> tuple[np.ndarray, GeoReference | None]:
    """Returns ((H, W, 3) uint8 RGB, its geo-reference or None) of an image file.

    TIFFs are opened with rasterio (optional ``geo`` extra) to find a CRS and transform;
    without rasterio they are read as plain images and the geo-reference is lost. With
    ``keep_nodata``, an input with no-data pixels (nodata value or mask, NaN, alpha 0) comes
    back as (H, W, 4), alpha 0 where there is no data (:func:`roadparse.io.samples.split_alpha`).
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import rasterio
            from rasterio.errors import NotGeoreferencedWarning
        except ImportError:
            log.warning("%s: rasterio is not installed (pip install 'roadparse[geo]'); geo-referencing is not kept", path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as source:
                    if source.crs is not None or not source.transform.is_identity:
                        bands = np.moveaxis(source.read(indexes=[1, 2, 3] if source.count >= 3 else [1]), 0, -1)
                        mask = source.dataset_mask() if keep_nodata else None
                        reference = GeoReference(source.crs, source.transform)
                        nodata = nodata_pixels(bands, alpha=mask) if keep_nodata else None
                        scale = sample_scale(bands, valid=None if nodata is None else ~nodata) if bands.dtype != np.uint8 else None
                        return with_alpha(bands_to_rgb_uint8(bands, scale), nodata), reference
    return read_image(path, keep_nodata=keep_nodata), None


def exif_georeference(path: Path) -> tuple[GeoReference | None, str | None]:
    """Returns (the approximate UTM geo-reference of a drone JPEG from its EXIF/XMP, or None; why not).

    (None, None) for images without a GPS position; (None, reason) when the frame is
    refused (oblique, rotated) or rasterio is missing; the reason is also logged.
    """
    from roadparse.io.exif import has_gps_position

    if path.suffix.lower() not in (".jpg", ".jpeg") or not has_gps_position(path):
        return None, None
    from roadparse.io.georef import georeference_frame

    try:
        from rasterio.crs import CRS
        from rasterio.transform import Affine

        footprint = georeference_frame(path)
    except (ValueError, ImportError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{exc.name} is not installed (pip install 'roadparse[geo]')"
        log.warning("%s: not georeferenced: %s", path, reason)
        return None, reason
    return GeoReference(CRS.from_epsg(footprint.epsg), Affine(*footprint.transform), source="exif"), None


def write_confidence_png(path: Path, confidence: np.ndarray) -> None:
    """Writes an (H, W) uint8 confidence map (class probability × 255) as a greyscale PNG, atomically."""
    from PIL import Image

    with atomic_output(path) as tmp:
        Image.fromarray(confidence, mode="L").save(tmp, format="PNG", compress_level=1)


def write_label_geotiff(path: Path, labels: np.ndarray, geo: GeoReference, classes: ClassSet) -> None:
    """Writes (H, W) uint8 labels as a single-band GeoTIFF with ``geo``'s CRS and transform, atomically."""
    try:
        import rasterio
    except ImportError:
        raise ValueError(f"{path}: writing GeoTIFF labels needs rasterio: pip install 'roadparse[geo]'") from None
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": 1, "height": labels.shape[0], "width": labels.shape[1],
        "crs": geo.crs, "transform": geo.transform, "nodata": IGNORE_INDEX, "compress": "deflate",
    }
    colormap = {i: (*color, 255) for i, color in enumerate(classes.colors)}
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as sink:
        sink.write(labels, 1)
        sink.write_colormap(1, colormap)


def overlay(image: np.ndarray, labels: np.ndarray, classes: ClassSet, alpha: float = 0.5) -> np.ndarray:
    """Returns (H, W, 3) uint8: the image blended with the class colours of (H, W) ``labels``."""
    import cv2

    return cv2.addWeighted(image, 1.0 - alpha, classes.colorize(labels), alpha, 0.0)  # no float copies of big frames


def collect_inputs(inputs: list[Path], skipped: dict[str, str] | None = None) -> list[Path]:
    """Returns the image files named by ``inputs`` (files, or folders listed non-recursively).

    Args:
        skipped: filled with the entries named like images that are not files (symlink
            loops, broken links, folders) and the reason.

    Raises:
        ValueError: nothing to predict, or two inputs share a file stem (their outputs would collide).
    """
    files: list[Path] = []
    for item in inputs:
        listing = scan_images(item)
        files.extend(listing.images)
        if skipped is not None:
            skipped.update({str(path): reason for path, reason in listing.skipped.items()})
    if not files:
        raise ValueError(f"no images found in {', '.join(map(str, inputs))}")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen and seen[path.stem] != path:
            raise ValueError(f"{seen[path.stem]} and {path} share the name {path.stem!r}; predict them into separate --out folders")
        seen[path.stem] = path
    return list(dict.fromkeys(files))


def class_set_for(record: dict[str, Any], classes_path: str | None) -> ClassSet:
    """Returns the classes a saved model predicts: from its record, else the classes file."""
    names = record.get("class_names")
    colors = record.get("class_colors")
    if names and colors and len(names) == len(colors):
        return ClassSet(tuple(names), tuple(tuple(c) for c in colors))
    classes = load_classes(classes_path)
    n_classes = int(record["spec"]["num_classes"])
    if len(classes) != n_classes:
        raise ValueError(f"the model predicts {n_classes} classes but the classes file has {len(classes)}")
    return classes


RESAMPLE_TOLERANCE = 0.10
"""``predict.resample: auto`` resamples an input whose GSD differs from the model's by more than this share."""
MAX_UPSAMPLE = 4.0
"""Largest upsampling per side ``predict.resample`` does (an input 4x coarser than the model's GSD): beyond, the
input fails with a message (the model would see blurred blobs, and 16x the pixels)."""


@dataclass(frozen=True)
class ResamplePlan:
    """At what resolution one input is predicted."""

    gsd: FrameGsd
    """the input's GSD (source ``default``: unknown, the paper's 0.25 used for areas only)"""
    model_gsd_cm: float | None
    """the working GSD the model records (None: a model from before it was recorded, or trained on mixed GSDs)"""
    scale: float
    """model pixels per input pixel (1.0: predicted at the input's own resolution)"""
    window_px: int
    """sliding-window side in the pixels the model sees"""
    note: str | None = None
    """why an input that might have been resampled was not"""


def input_gsd(path: Path, settings: PredictSettings) -> FrameGsd:
    """Returns an input's GSD: GeoTIFF transform, drone EXIF, ``predict.gsd_cm``, else the default (unknown)."""
    info = None
    if path.suffix.lower() in GEO_SUFFIXES:
        try:
            info = read_geo_info(path)
        except GeoReadError as exc:
            log.info("%s: %s", path, exc)
    return frame_gsd(path, info, settings.gsd_cm, setting_name="predict.gsd_cm (or --gsd-cm)")


def plan_resampling(path: Path, gsd: FrameGsd, model_gsd_cm: float | None, settings: PredictSettings) -> ResamplePlan:
    """Returns how ``path`` is predicted: resampled to the model's working GSD (``predict.resample: auto``, both
    GSDs known, more than 10 % apart) or at its own resolution, and the window in the pixels the model sees.

    Raises:
        ValueError: resampling would upsample more than :data:`MAX_UPSAMPLE` per side.
    """
    known = gsd.source != "default"
    note = None
    scale = 1.0
    if settings.resample == "auto" and model_gsd_cm is not None:
        if not known:
            note = (f"{path.name}: GSD unknown (no GeoTIFF transform, no drone EXIF, no predict.gsd_cm): predicted at its "
                    f"own resolution, not resampled to the model's {model_gsd_cm:g} cm/px; set predict.gsd_cm or --gsd-cm")
        elif abs(gsd.cm / model_gsd_cm - 1.0) > RESAMPLE_TOLERANCE:
            scale = gsd.cm / model_gsd_cm
            if scale > MAX_UPSAMPLE:
                raise ValueError(
                    f"{path}: at {gsd.cm:.3g} cm/px it would be upsampled {scale:.1f}x to the model's {model_gsd_cm:g} cm/px "
                    f"(at most {MAX_UPSAMPLE:g}x); predict it at its own resolution with --set predict.resample=never, or "
                    "use a model trained at a coarser GSD"
                )
    if scale != 1.0:
        seen = model_gsd_cm
    else:
        seen = gsd.cm if known else model_gsd_cm
    return ResamplePlan(gsd, model_gsd_cm, scale, settings.window_pixels(seen), note)


def predict_labels(
    model: torch.nn.Module, image: np.ndarray, plan: ResamplePlan, settings: PredictSettings, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the (H, W) uint8 labels and confidence of an (H, W, 3) image, at its own size.

    A resampled input (``plan.scale`` != 1) is resized to the model's GSD (area averaging down, bicubic up),
    predicted there, and its class probabilities are resized back bilinearly before the argmax.
    """
    if plan.scale == 1.0:
        labels, confidence = predict_image(model, image, plan.window_px, settings.overlap, settings.batch_size, device,
                                           return_confidence=True)
        return labels, confidence
    height, width = image.shape[:2]
    working = resample_image(image, (max(1, round(width * plan.scale)), max(1, round(height * plan.scale))))
    _, probabilities = predict_image(model, working, plan.window_px, settings.overlap, settings.batch_size, device,
                                     return_probabilities=True)
    del working
    return labels_at_size(probabilities, (width, height))


def predict_valid_labels(
    model: torch.nn.Module, pixels: np.ndarray, plan: ResamplePlan, settings: PredictSettings, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (labels, confidence, RGB image) of an (H, W, 3) image or an (H, W, 4) one read with ``keep_nodata``:
    :func:`predict_labels`, then no data (alpha 0) is never labelled (255, confidence 0), so never measured."""
    image, nodata = split_alpha(pixels)
    labels, confidence = predict_labels(model, image, plan, settings, device)
    if nodata is not None:
        labels[nodata] = IGNORE_INDEX
        confidence[nodata] = 0
    return labels, confidence, image


def _gsd_record(plan: ResamplePlan) -> dict[str, Any]:
    """Returns the per-input record of its GSD and resampling."""
    entry: dict[str, Any] = {
        "gsd_cm": round(plan.gsd.cm, 6), "gsd_source": plan.gsd.source, "model_gsd_cm": plan.model_gsd_cm,
        "resampled": plan.scale != 1.0, "scale": round(plan.scale, 6), "window_px": plan.window_px,
    }
    if plan.gsd.estimated:
        entry["gsd_estimated"] = list(plan.gsd.estimated)
    notes = [*plan.gsd.notes, *([plan.note] if plan.note else [])]
    if notes:
        entry["notes"] = notes
    return entry


def predict_one(
    model: torch.nn.Module, path: Path, out_dir: Path, classes: ClassSet, settings: PredictSettings, device: torch.device,
    model_gsd_cm: float | None = None,
) -> dict[str, Any]:
    """Predicts one file, writes its outputs (label PNG, confidence PNG, overlay, GeoTIFF) and returns its record.

    Drone JPEGs with a GPS position are georeferenced from their EXIF/XMP (approximate
    nadir footprint in UTM); georeferenced outputs also get world files. With ``model_gsd_cm``
    (the model's working GSD) the input may be resampled to it (:func:`plan_resampling`);
    outputs are always at the input's size.
    """
    started = time.perf_counter()
    plan = plan_resampling(path, input_gsd(path, settings), model_gsd_cm, settings)
    if plan.note:
        log.warning(plan.note)
    pixels, geo = read_input(path, keep_nodata=True)
    geo_refused = None
    if geo is None:
        geo, geo_refused = exif_georeference(path)
    labels, confidence, image = predict_valid_labels(model, pixels, plan, settings, device)
    write_label_png(out_dir / f"{path.stem}_label.png", labels, classes)
    write_confidence_png(out_dir / f"{path.stem}_confidence.png", confidence)
    write_image(out_dir / f"{path.stem}_overlay.jpg", overlay(image, labels, classes), quality=90)
    gsd_record = _gsd_record(plan)
    pixel_m2 = geo.pixel_area_m2() if geo is not None else None
    if pixel_m2 is not None and geo is not None:
        gsd_record["gsd_source"] = geo.source  # the projected transform's own pixel area
    else:
        pixel_m2 = (plan.gsd.cm / 100.0) ** 2
    geo_record: dict[str, Any] = {"georeference_refused": geo_refused} if geo_refused else {}
    if geo is not None:
        from roadparse.io.georef import write_world_file

        write_label_geotiff(out_dir / f"{path.stem}_label.tif", labels, geo, classes)
        crs_wkt = geo.crs.to_wkt() if geo.crs is not None else None
        for raster in (f"{path.stem}_label.png", f"{path.stem}_confidence.png", f"{path.stem}_overlay.jpg"):
            write_world_file(out_dir / raster, tuple(geo.transform)[:6], crs_wkt)
        geo_record = {"crs": crs_wkt, "transform": [float(v) for v in tuple(geo.transform)[:6]], "georeference": geo.source}
    counts = np.bincount(labels.ravel(), minlength=len(classes))[: len(classes)]
    areas = {
        name: {"pixels": int(count), "share": round(float(count) / labels.size, 6), "m2": round(float(count) * pixel_m2, 4)}
        for name, count in zip(classes.names, counts, strict=True)
    }
    return {
        "input": str(path), "width": int(labels.shape[1]), "height": int(labels.shape[0]),
        "georeferenced": geo is not None, "pixel_area_m2": pixel_m2, **gsd_record,
        "seconds": round(time.perf_counter() - started, 3), "areas": areas, **geo_record,
    }


@dataclass(frozen=True)
class PredictTask:
    """predict's per-input work, shipped to each worker (this process, or a Ray actor): ``load()`` loads the
    model once on the worker's device; the function it returns predicts a batch of input paths.

    Each input's outputs are written by the worker, atomically; its record goes back to the driver,
    which journals it in ``out_dir/.records``. A bad input gives its exception in place of a record.
    """

    model_path: str
    out_dir: str
    settings: PredictSettings
    classes_path: str | None

    def load(self) -> BatchFn:
        """Loads the model; returns the function that predicts a batch of paths."""
        device = resolve_device(self.settings.device)
        model, record = load_segmenter(self.model_path, device)
        classes = class_set_for(record, self.classes_path)
        model_gsd_cm = working_gsd_of(record)
        out_dir = Path(self.out_dir)

        def run(batch: list[str]) -> list[Any]:
            results: list[Any] = []
            for path in batch:
                try:
                    results.append(predict_one(model, Path(path), out_dir, classes, self.settings, device, model_gsd_cm))
                except ITEM_ERRORS as exc:
                    results.append(exc)
            return results

        return run


def predict_files(
    model_path: str | Path, inputs: list[Path], out_dir: str | Path, settings: Settings
) -> dict[str, Any]:
    """Applies a saved model to every input image and returns the summary written to ``summary.json``.

    Inputs already predicted into ``out_dir`` with the same model and settings (a record
    in ``out_dir/.records``) are skipped, so an interrupted run resumes; an unreadable
    input is reported in ``failed`` and the others go on.
    ``areas.csv`` holds one row per (input, class): pixels, share, m².
    With ``run.executor: ray`` the inputs are predicted on Ray actors, each loading the model
    once; the outputs, records and summary are the same as in this process.
    """
    out_dir = Path(out_dir)
    record = read_segmenter_record(model_path)  # a bad model path fails here, before any worker starts
    classes = class_set_for(record, settings.classes)
    skipped: dict[str, str] = {}
    files = collect_inputs(inputs, skipped)
    weights = Path(model_path) / MODEL_WEIGHTS if Path(model_path).is_dir() else Path(model_path)
    model_gsd_cm = working_gsd_of(record)
    run_key = fingerprint({"model": str(Path(model_path).resolve()), "mtime": weights.stat().st_mtime_ns,
                           "settings": settings.predict.identity(), "model_gsd_cm": model_gsd_cm})
    records_dir = out_dir / ".records"
    remove_stale_temporaries(out_dir)  # left by a killed run
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    todo: list[Path] = []
    for path in files:
        record_path = records_dir / f"{path.stem}.json"
        if record_path.is_file():
            previous = json.loads(record_path.read_text())
            if previous.get("run_key") == run_key:  # same model and settings: already done
                results[path.stem] = previous
                continue
        todo.append(path)
    if len(todo) < len(files):
        log.info("predict: resuming, %d of %d images already done", len(files) - len(todo), len(files))
    workers: list[dict[str, Any]] = []
    if todo:
        task = PredictTask(str(model_path), str(out_dir), settings.predict, settings.classes)
        executor = make_executor(settings.run)
        try:
            with tqdm(total=len(todo), desc="predict", unit="image", dynamic_ncols=True) as bar:
                for batch, outcome in executor.map(task, [[str(path)] for path in todo]):
                    path = Path(batch[0])
                    result = outcome if isinstance(outcome, Exception) else outcome[0]
                    bar.update(1)
                    if isinstance(result, Exception) and is_environment_error(result):  # a full disk is not a bad input
                        raise StorageError(storage_message(result, out_dir, done=len(results), left=len(files) - len(results),
                                                           written=folder_bytes(out_dir))) from result
                    if isinstance(result, Exception):
                        log.warning("predict: %s failed: %s", path, result)
                        failed[str(path)] = str(result) or type(result).__name__
                        continue
                    result["run_key"] = run_key
                    atomic_write_json(records_dir / f"{path.stem}.json", result)
                    results[path.stem] = result
            workers = executor.environments()
        finally:
            executor.close()
    ordered = [results[path.stem] for path in files if path.stem in results]  # input order, however the work was split
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["input", "class", "pixels", "share", "area_m2"])
    for result in ordered:
        for name, area in result["areas"].items():
            writer.writerow([result["input"], name, area["pixels"], area["share"], "" if area["m2"] is None else area["m2"]])
    atomic_write_text(out_dir / "areas.csv", table.getvalue())
    summary = {
        "model": str(model_path), "model_gsd_cm": model_gsd_cm, "classes": list(classes.names), "settings": settings.predict.model_dump(mode="json"),
        "git_sha": git_sha(), "environment": environment(), "images": ordered, "failed": {str(path): failed[str(path)] for path in files if str(path) in failed},
        "skipped": skipped, **({"worker_environments": workers} if workers else {}),
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
