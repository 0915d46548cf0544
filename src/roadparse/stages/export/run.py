"""``roadparse export``: a prediction folder (or pseudo-labels) → GIS layers + measurements, or COCO JSON."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from roadparse.artifacts import pseudo_label_dir
from roadparse.io.labels import ClassSet, load_classes
from roadparse.stages.export.coco import (
    coco_dataset,
    label_folder_images,
    prediction_images,
    workdir_frame_images,
)
from roadparse.stages.export.gis import Format, check_format, write_layers
from roadparse.stages.export.measure import (
    SUMMED,
    frame_measurements,
    ground_once_note,
    survey_measurements,
    write_measurements,
)
from roadparse.stages.export.rasters import read_frames, read_summary
from roadparse.stages.export.survey import survey_totals
from roadparse.stages.export.vectors import LINEAR_CLASSES, frame_layers, merge_layers
from roadparse.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

MIN_LAYER_AREA_M2 = 0.001
"""Default smallest region of the GIS layers (10 cm²: prediction specks)."""

def default_output(source: Path, fmt: str) -> Path:
    """Returns the default output path: ``SOURCE/export.gpkg``, ``SOURCE/export_geojson/``, ``SOURCE/coco.json``..."""
    if fmt == "coco":
        return source / "coco.json"
    return source / ("export.gpkg" if fmt == "gpkg" else f"export_{fmt}")


def _classes(summary: dict[str, Any], classes_path: str | None) -> ClassSet:
    names = summary.get("classes")
    if names and classes_path is None:
        builtin = load_classes(None)
        colors = [builtin.colors[builtin.names.index(n)] if n in builtin.names else (128, 128, 128) for n in names]
        return ClassSet(tuple(names), tuple(colors))
    return load_classes(classes_path)


def export_vectors(
    pred_dir: str | Path,
    out: str | Path,
    fmt: Format,
    *,
    workdir: str | Path | None = None,
    gsd_cm: float | None = None,
    simplify_cm: float = 1.0,
    min_area_m2: float = MIN_LAYER_AREA_M2,
    linear_classes: tuple[str, ...] = LINEAR_CLASSES,
    classes_path: str | None = None,
) -> dict[str, Any]:
    """Exports a prediction folder as GIS layers and writes the measurements beside them; returns a summary.

    Survey figures of georeferenced frames count the ground once
    (:func:`~roadparse.stages.export.survey.survey_totals`); without georeference they are
    sums over frames, and the files say so.

    Raises:
        ValueError: no predictions, frames in different CRSs, a geographic (degree) CRS, or
            GeoJSON of frames without georeference (:class:`~roadparse.stages.export.gis.UnreferencedGeoJSONError`).
    """
    pred_dir, out = Path(pred_dir), Path(out)
    summary = read_summary(pred_dir)
    classes = _classes(summary, classes_path)
    frames = read_frames(pred_dir, workdir, gsd_cm)
    crs_values = {frame.crs_wkt for frame in frames}
    if len(crs_values) > 1:
        raise ValueError(f"{pred_dir}: frames lie in different CRSs (or some have none); export them separately")
    crs_wkt = crs_values.pop()
    check_format(fmt, crs_wkt, pred_dir)
    crs_name = None
    if crs_wkt is not None:
        from pyproj import CRS

        crs = CRS.from_wkt(crs_wkt)
        if not crs.is_projected:
            raise ValueError(f"{pred_dir}: the predictions are in a geographic CRS (degrees); reproject the input "
                             "to a projected CRS in metres first (e.g. gdalwarp -t_srs EPSG:326<zone>)")
        crs_name = crs.name
    run = {"model": Path(str(summary.get("model", ""))).name,
           "run": str(next((r.get("run_key", "") for r in summary["images"]), ""))}
    per_frame, measurements = [], {}
    for frame in frames:
        layers = frame_layers(frame, classes, simplify_cm=simplify_cm, min_area_m2=min_area_m2,
                              linear_classes=linear_classes, run=run)
        per_frame.append(layers)
        measurements[frame.frame] = frame_measurements(frame, layers, classes)
    if crs_name is not None:
        survey, note = survey_totals(frames, per_frame, classes), ground_once_note(crs_name)
    else:
        survey, note = survey_measurements(measurements), SUMMED
        if len(frames) > 1:
            log.warning("%s: frames without georeference: survey totals are sums over frames, so ground that frames "
                        "share is counted once per frame", pred_dir)
    layers = merge_layers(per_frame)
    files = write_layers(out, layers, fmt, crs_wkt, classes)
    measure_dir = out.parent if fmt == "gpkg" else out
    files += write_measurements(measure_dir, measurements, survey, note)
    log.info("exported %d frame(s): %s", len(frames), ", ".join(f"{n} ({len(layer.geometries)})" for n, layer in layers.items()))
    return {"frames": len(frames), "layers": {n: len(layer.geometries) for n, layer in layers.items()},
            "crs": crs_wkt, "files": [str(f) for f in files], "measurements": measurements, "survey": survey,
            "survey_totals": note}


def default_coco_min_area_m2(workdir: Path | None = None) -> float:
    """Returns the default smallest COCO region in m²: the mask generator's area filter.

    A work directory whose ``masks`` stage recorded its filter (pixels at a GSD) gives that
    one; otherwise the ``masks.min_mask_area_cm2`` default.
    """
    from roadparse.config import MasksSettings

    if workdir is not None:
        manifest: dict[str, Any] = dict(Workspace(workdir).read_manifest("masks") or {})
        recorded = (manifest.get("summary") or {}).get("min_mask_area_px") or {}
        if recorded:
            gsd, pixels = next(iter(recorded.items()))
            return float(pixels) * (float(gsd) / 100.0) ** 2
    return float(MasksSettings.model_fields["min_mask_area_cm2"].default) / 1e4


def export_coco(source: str | Path, out: str | Path, classes_path: str | None = None, *,
                min_area_m2: float | None = None, gsd_cm: float | None = None) -> dict[str, Any]:
    """Writes COCO instances of a prediction folder, a work directory's pseudo-labels, or a folder of label PNGs.

    A work directory (``roi`` and ``pseudolabel`` done) is exported per frame in frame pixels
    (:func:`~roadparse.stages.export.coco.workdir_frame_images`), with ``area_m2`` from the
    frame's GSD; ``info.coordinates`` names the pixels the annotations are in. Regions under
    ``min_area_m2`` (default: :func:`default_coco_min_area_m2`) are left out; ``gsd_cm`` is
    the pixel size of images that do not know theirs (a folder of label PNGs).
    Returns the dataset's counts and the file written.
    """
    source, out = Path(source), Path(out)
    workdir = None
    if (source / "summary.json").is_file():
        summary = read_summary(source)
        images, classes, what = prediction_images(source, summary), _classes(summary, classes_path), "predictions"
        coordinates = "input pixels"
    elif (source / "pseudolabel" / "labels").is_dir() and (source / "roi" / "manifest.json").is_file():
        workspace, workdir = Workspace(source), source
        images = workdir_frame_images(workspace, pseudo_label_dir(workspace))
        classes, what = load_classes(classes_path), "pseudo-labels"
        coordinates = "frame pixels (full-resolution input frames; tiles mapped back from their roi offset and scale)"
    else:
        label_dir = source / "pseudolabel" / "labels" if (source / "pseudolabel" / "labels").is_dir() else source
        images, classes, what = label_folder_images(label_dir), load_classes(classes_path), "pseudo-labels"
        coordinates = "label PNG pixels"
        workdir = source if (source / "masks").is_dir() else None
    if gsd_cm is not None:
        images = [image if image.gsd_cm is not None else replace(image, gsd_cm=gsd_cm) for image in images]
    min_area = default_coco_min_area_m2(workdir) if min_area_m2 is None else min_area_m2
    dataset = coco_dataset(images, classes, description=f"roadparse {what} from {source}", coordinates=coordinates,
                           min_area_m2=min_area)
    atomic_write_json(out, dataset)
    return {"images": len(dataset["images"]), "annotations": len(dataset["annotations"]), "files": [str(out)],
            "min_area_m2": min_area, "left_out": dataset["info"].get("left_out", 0)}
