"""Exports as a function: :func:`export` (``roadparse export``) → :class:`ExportResult`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from roadparse.api.run import PathLike

ExportFormat = Literal["gpkg", "geojson", "shp", "coco"]
"""What :func:`export` writes: a GeoPackage, GeoJSON or shapefile layers, or COCO instances."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote."""

    files: list[Path]
    """Every file written (layers, measurements, COCO JSON)."""
    frames: int
    """Frames exported as layers (0 for COCO only)."""
    layers: dict[str, int]
    """Layer name -> features (polygons or centre-lines)."""
    measurements: dict[str, dict[str, float | int]]
    """Frame -> measurements (m² per class, m of sealing and marking, cone count)."""
    annotations: int | None
    """COCO instances written (None without ``coco``)."""


def export(
    predictions: PathLike,
    out: PathLike | None = None,
    formats: ExportFormat | Sequence[ExportFormat] = ("gpkg",),
    *,
    workdir: PathLike | None = None,
    gsd_cm: float | None = None,
    simplify_cm: float = 1.0,
    min_area_m2: float | None = None,
    linear_classes: Sequence[str] | None = None,
    classes: PathLike | None = None,
) -> ExportResult:
    """Exports a prediction folder as GIS layers with measurements, and/or COCO annotations (``roadparse export``).

    Args:
        predictions: a folder written by :meth:`Model.predict_files` or ``roadparse predict``; for
            ``coco`` also a work directory (its pseudo-labels) or a folder of label PNGs.
        out: the output folder (default: ``predictions``): ``export.gpkg``,
            ``export_geojson/``, ``export_shp/``, ``coco.json`` and the measurements beside the layers.
        formats: one or several of ``gpkg``, ``geojson``, ``shp``, ``coco``.
        workdir: the work directory whose roi tiles were predicted: tiles are joined into their frames.
        gsd_cm: frame pixel size (cm) for inputs without a CRS or a recorded GSD (default: the tiles' or
            ``predict.gsd_cm``); COCO's ``area_m2`` of label PNGs comes from it.
        simplify_cm: polygon simplification tolerance, cm.
        min_area_m2: regions smaller than this are left out (default: 0.001 m² in the GIS layers; in COCO the
            masks' area filter of the run, ``masks.min_mask_area_cm2``, as ``roadparse export``).
        linear_classes: classes that also get centre-lines (default: sealing and markings).
        classes: a classes YAML (default: the classes the predictions name).

    Raises:
        ValueError: no predictions, frames in different CRSs, a geographic CRS, or an unknown format.
    """
    from roadparse.stages.export.run import (
        MIN_LAYER_AREA_M2,
        default_output,
        export_coco,
        export_vectors,
    )
    from roadparse.stages.export.vectors import LINEAR_CLASSES

    source = Path(predictions)
    folder = Path(out) if out is not None else source
    chosen = [formats] if isinstance(formats, str) else list(formats)
    unknown = sorted(set(chosen) - {"gpkg", "geojson", "shp", "coco"})
    if unknown or not chosen:
        raise ValueError(f"formats: unknown {unknown or 'none given'}; choose from gpkg, geojson, shp, coco")
    classes_path = None if classes is None else os.fspath(classes)
    files: list[Path] = []
    frames, layers, measurements, annotations = 0, {}, {}, None
    for fmt in chosen:
        target = default_output(folder, fmt)
        if fmt == "coco":
            written = export_coco(source, target, classes_path, min_area_m2=min_area_m2, gsd_cm=gsd_cm)
            annotations = int(written["annotations"])
        else:
            written = export_vectors(
                source, target, fmt, workdir=None if workdir is None else Path(workdir), gsd_cm=gsd_cm, simplify_cm=simplify_cm,
                min_area_m2=MIN_LAYER_AREA_M2 if min_area_m2 is None else min_area_m2,
                linear_classes=tuple(linear_classes) if linear_classes is not None else LINEAR_CLASSES,
                classes_path=classes_path,
            )
            frames, layers, measurements = int(written["frames"]), dict(written["layers"]), dict(written["measurements"])
        files += [Path(name) for name in written["files"] if Path(name) not in files]
    return ExportResult(files=files, frames=frames, layers=layers, measurements=measurements, annotations=annotations)
