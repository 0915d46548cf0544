"""Writes two synthetic surveys of one corridor (``roadparse synth OUT --corridor``) and their truth.

Layout under ``out_dir``::

    centreline.gpkg                  layer ``centreline`` (fields id, name), EPSG:32633
    centreline.geojson               the same line in WGS84 (RFC 7946)
    truth.json                       planted wear, sealing, the removed dash, frames, per 10 m interval
    a/frames/a_000.tif ...           RGB GeoTIFF frames of survey A (EPSG:32633, north-up)
    a/labels/a_000.tif ...           their ground-truth label GeoTIFFs (255 = no data)
    a/truth_predictions/             the labels in the layout `roadparse predict` writes
                                     (``<frame>_label.png`` + ``summary.json``), for `roadparse export`
    b/...                            the same for survey B
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.io.labels import IGNORE_INDEX, load_classes, write_label_png
from roadparse.synth.corridor import (
    CRS_EPSG,
    SECTION_M,
    CorridorPlan,
    Survey,
    frame_windows,
    path_length,
    plan_corridor,
    render_world,
)
from roadparse.workspace import atomic_write_json

INTERVAL_M = SECTION_M
"""Truth is tabulated per interval of this length (the solid lines' wear sections)."""


def _write_geotiff(path: Path, bands: np.ndarray, transform: tuple[float, ...], nodata: int | None) -> None:
    import rasterio
    from rasterio.transform import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    data = bands[None] if bands.ndim == 2 else np.moveaxis(bands, -1, 0)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": "uint8", "crs": f"EPSG:{CRS_EPSG}", "transform": Affine(*transform), "compress": "deflate",
               **({"nodata": nodata} if nodata is not None else {})}
    with rasterio.open(path, "w", **profile) as target:
        target.write(data)


def write_centreline(out_dir: Path, plan: CorridorPlan) -> list[Path]:
    """Writes the centreline as ``centreline.gpkg`` (projected CRS) and ``centreline.geojson`` (WGS84)."""
    import pyogrio.raw
    import shapely
    from pyproj import Transformer

    coords = plan.centreline.coords()
    to_wgs84 = Transformer.from_crs(f"EPSG:{CRS_EPSG}", "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(coords[:, 0], coords[:, 1])
    fields, values = ["id", "name"], [np.array(["R1"]), np.array(["Corridor road"])]
    paths = [out_dir / "centreline.gpkg", out_dir / "centreline.geojson"]
    for path, line, crs in ((paths[0], coords, f"EPSG:{CRS_EPSG}"), (paths[1], np.stack([lon, lat], axis=1), "EPSG:4326")):
        path.unlink(missing_ok=True)
        pyogrio.raw.write(path, shapely.to_wkb(np.array([shapely.LineString(line)], dtype=object)), values, fields,
                          layer="centreline", geometry_type="LineString", crs=crs,
                          driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON")
    return paths


def write_survey(out_dir: Path, plan: CorridorPlan, survey: Survey, seed: int) -> dict[str, tuple[int, int]]:
    """Writes one survey's frames, label GeoTIFFs and ``truth_predictions``; returns marking id → (envelope, worn) px."""
    image, labels, shares = render_world(plan, survey, seed)
    classes = load_classes(None)
    records = []
    root = out_dir / survey
    predictions = root / "truth_predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    a, b, c, d, e, f = plan.transform
    for name, (col0, row0, col1, row1) in frame_windows(plan, survey):
        transform = (a, b, c + a * col0, d, e, f + e * row0)
        frame_labels = labels[row0:row1, col0:col1]
        _write_geotiff(root / "frames" / f"{name}.tif", image[row0:row1, col0:col1], transform, None)
        _write_geotiff(root / "labels" / f"{name}.tif", frame_labels, transform, IGNORE_INDEX)
        write_label_png(predictions / f"{name}_label.png", np.ascontiguousarray(frame_labels), classes)
        records.append({"input": str(root / "frames" / f"{name}.tif"), "width": col1 - col0, "height": row1 - row0,
                        "georeferenced": True, "pixel_area_m2": plan.gsd_m**2, "crs": _crs_wkt(),
                        "transform": list(transform), "georeference": "geotiff"})
    atomic_write_json(predictions / "summary.json", {
        "model": "ground truth (roadparse synth --corridor)", "classes": list(classes.names), "images": records,
        "failed": {}, "skipped": []})
    return shares


def _crs_wkt() -> str:
    from pyproj import CRS

    return str(CRS.from_epsg(CRS_EPSG).to_wkt())


def _interval(s: float) -> int:
    return int(math.floor(s / INTERVAL_M))


def truth_record(plan: CorridorPlan, shares: dict[str, dict[str, tuple[int, int]]]) -> dict[str, Any]:
    """Returns the truth of both surveys: per marking, per sealing line and per :data:`INTERVAL_M` interval."""
    line = plan.centreline
    n_intervals = int(math.ceil(line.length / INTERVAL_M))
    markings = []
    per_interval: list[dict[str, Any]] = [
        {"index": k, "from_m": k * INTERVAL_M, "to_m": min((k + 1) * INTERVAL_M, line.length), "new_sealing_m": 0.0,
         "removed": [], "changed_wear": []} for k in range(n_intervals)]
    envelope: dict[tuple[str, int, str], list[int]] = {}
    for marking in plan.markings:
        record = {"id": marking.id, "class": marking.class_name, "kind": marking.kind, "from_m": marking.s0,
                  "to_m": marking.s1, "offset_m": round((marking.d0 + marking.d1) / 2, 4), "removed_in_b": marking.removed_in_b}
        k = _interval((marking.s0 + marking.s1) / 2)
        for survey in ("a", "b"):
            total, worn = shares[survey][marking.id]
            record[f"wear_{survey}"] = round(worn / total, 4)
            record["envelope_px"] = total
            if survey == "b" and marking.removed_in_b:
                continue  # a removed marking is reported as missing, not as worn
            sums = envelope.setdefault((survey, k, marking.class_name), [0, 0])
            sums[0] += total
            sums[1] += worn
        markings.append(record)
        if marking.removed_in_b:
            per_interval[k]["removed"].append(marking.id)
        elif marking.wear_b != marking.wear_a:
            per_interval[k]["changed_wear"].append(marking.id)
    for (survey, k, class_name), (total, worn) in envelope.items():
        per_interval[k][f"wear_{survey}.{class_name}"] = round(worn / total, 4)
    sealing = []
    for strip in plan.sealing:
        s, _ = line.chainage(strip.points[:, 0], strip.points[:, 1])
        sealing.append({"id": strip.id, "in_a": strip.in_a, "length_m": round(path_length(strip.points), 4),
                        "from_m": round(float(s.min()), 3), "to_m": round(float(s.max()), 3)})
        if not strip.in_a:
            steps = np.hypot(*np.diff(strip.points, axis=0).T)
            for step, mid in zip(steps, (s[1:] + s[:-1]) / 2, strict=True):
                per_interval[_interval(float(mid))]["new_sealing_m"] += float(step)
    for row in per_interval:
        row["new_sealing_m"] = round(row["new_sealing_m"], 4)
    return {
        "crs": f"EPSG:{CRS_EPSG}", "gsd_cm": round(plan.gsd_m * 100, 4),
        "centreline": {"id": "R1", "name": "Corridor road", "length_m": round(float(path_length(line.coords())), 4)},
        "frames": {survey: {"chainage_m": chainages, "size_m": plan.frame_m} for survey, chainages in plan.frames.items()},
        "interval_m": INTERVAL_M, "markings": markings, "sealing": sealing,
        "cones": [{"chainage_m": s, "offset_m": d} for s, d in plan.cones], "intervals": per_interval,
    }


def generate_corridor(out_dir: str | Path, seed: int = 0, length_m: float = 40.0, gsd_cm: float = 2.5) -> dict[str, Any]:
    """Writes both surveys of a corridor ``length_m`` long at ``gsd_cm`` and returns the truth (also in ``truth.json``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_corridor(np.random.default_rng(seed), length_m=length_m, gsd_cm=gsd_cm)
    write_centreline(out_dir, plan)
    shares = {survey: write_survey(out_dir, plan, survey, seed + 1) for survey in ("a", "b")}
    truth = truth_record(plan, shares)
    atomic_write_json(out_dir / "truth.json", truth)
    return truth
