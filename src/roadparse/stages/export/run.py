"""``roadparse export``: a prediction folder (or pseudo-labels) → GIS layers + measurements, or COCO JSON."""

from __future__ import annotations

import logging
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
from roadparse.stages.export.measure import frame_measurements, write_measurements
from roadparse.stages.export.rasters import read_frames, read_summary
from roadparse.stages.export.vectors import (
    LINEAR_CLASSES,
    Format,
    frame_layers,
    merge_layers,
    write_layers,
)
from roadparse.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)



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
    min_area_m2: float = 0.001,
    linear_classes: tuple[str, ...] = LINEAR_CLASSES,
    classes_path: str | None = None,
) -> dict[str, Any]:
    """Exports a prediction folder as GIS layers and writes the measurements beside them; returns a summary.

    Raises:
        ValueError: no predictions, frames in different CRSs, or a geographic (degree) CRS.
    """
    pred_dir, out = Path(pred_dir), Path(out)
    summary = read_summary(pred_dir)
    classes = _classes(summary, classes_path)
    frames = read_frames(pred_dir, workdir, gsd_cm)
    crs_values = {frame.crs_wkt for frame in frames}
    if len(crs_values) > 1:
        raise ValueError(f"{pred_dir}: frames lie in different CRSs (or some have none); export them separately")
    crs_wkt = crs_values.pop()
    if crs_wkt is not None:
        from pyproj import CRS

        if not CRS.from_wkt(crs_wkt).is_projected:
            raise ValueError(f"{pred_dir}: the predictions are in a geographic CRS (degrees); reproject the input "
                             "to a projected CRS in metres first (e.g. gdalwarp -t_srs EPSG:326<zone>)")
    run = {"model": Path(str(summary.get("model", ""))).name,
           "run": str(next((r.get("run_key", "") for r in summary["images"]), ""))}
    per_frame, measurements = [], {}
    for frame in frames:
        layers = frame_layers(frame, classes, simplify_cm=simplify_cm, min_area_m2=min_area_m2,
                              linear_classes=linear_classes, run=run)
        per_frame.append(layers)
        measurements[frame.frame] = frame_measurements(frame, layers, classes)
    layers = merge_layers(per_frame)
    files = write_layers(out, layers, fmt, crs_wkt)
    measure_dir = out.parent if fmt == "gpkg" else out
    files += write_measurements(measure_dir, measurements)
    log.info("exported %d frame(s): %s", len(frames), ", ".join(f"{n} ({len(layer.geometries)})" for n, layer in layers.items()))
    return {"frames": len(frames), "layers": {n: len(layer.geometries) for n, layer in layers.items()},
            "crs": crs_wkt, "files": [str(f) for f in files], "measurements": measurements}


def export_coco(source: str | Path, out: str | Path, classes_path: str | None = None) -> dict[str, Any]:
    """Writes COCO instances of a prediction folder, a work directory's pseudo-labels, or a folder of label PNGs.

    A work directory (``roi`` and ``pseudolabel`` done) is exported per frame in frame pixels
    (:func:`~roadparse.stages.export.coco.workdir_frame_images`), with ``area_m2`` from the
    frame's GSD; ``info.coordinates`` names the pixels the annotations are in.
    Returns the dataset's counts and the file written.
    """
    source, out = Path(source), Path(out)
    if (source / "summary.json").is_file():
        summary = read_summary(source)
        images, classes, what = prediction_images(source, summary), _classes(summary, classes_path), "predictions"
        coordinates = "input pixels"
    elif (source / "pseudolabel" / "labels").is_dir() and (source / "roi" / "manifest.json").is_file():
        workspace = Workspace(source)
        images = workdir_frame_images(workspace, pseudo_label_dir(workspace))
        classes, what = load_classes(classes_path), "pseudo-labels"
        coordinates = "frame pixels (full-resolution input frames; tiles mapped back from their roi offset and scale)"
    else:
        label_dir = source / "pseudolabel" / "labels" if (source / "pseudolabel" / "labels").is_dir() else source
        images, classes, what = label_folder_images(label_dir), load_classes(classes_path), "pseudo-labels"
        coordinates = "label PNG pixels"
    dataset = coco_dataset(images, classes, description=f"roadparse {what} from {source}", coordinates=coordinates)
    atomic_write_json(out, dataset)
    return {"images": len(dataset["images"]), "annotations": len(dataset["annotations"]), "files": [str(out)]}
