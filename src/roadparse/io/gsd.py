"""Ground sampling distance (cm per pixel) of a frame, from the best source it carries.

Sources, in order (the first that gives a value wins):

1. ``geotiff``: the GeoTIFF's affine transform. A projected CRS gives the pixel size in its
   linear unit (converted to metres); a geographic CRS (degrees) gives the pixel size
   measured on the CRS's ellipsoid at the frame centre (pyproj). A transform without a CRS
   is skipped with a note (its unit is unknown).
2. ``exif``: a drone photo's EXIF/XMP (relative altitude × sensor width / (focal length ×
   pixels across the sensor), :mod:`roadparse.io.exif`). Only frames whose EXIF names a camera
   or a focal length are read this way. A frame cropped after capture keeps the capture's GSD;
   a resized one scales it (``size_change``, decided by the aspect ratio). A missing or non-positive altitude, or an unknown camera, makes
   the value an estimate: when the user gave ``roi.gsd_cm`` that setting is used instead,
   otherwise the estimate, each time with a note naming the frame and the value used.
3. ``setting``: the user's ``roi.gsd_cm``.
4. ``default``: the paper's 0.25 cm/px, with a note saying to set ``roi.gsd_cm``.

Notes are returned (for the roi manifest) and logged as warnings; nothing here raises for
missing or odd metadata.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from roadparse.io.exif import has_camera_exif, read_drone_metadata
from roadparse.io.geo import GeoInfo

log = logging.getLogger(__name__)

DEFAULT_GSD_CM = 0.25
"""The paper's ground sampling distance, used when a frame says nothing and no setting is given."""


@dataclass(frozen=True)
class FrameGsd:
    """A frame's ground sampling distance and where it came from."""

    cm: float
    """cm per pixel (the mean of the x and y pixel sizes for GeoTIFFs)"""
    source: str
    """``geotiff``, ``exif``, ``setting`` or ``default``"""
    estimated: tuple[str, ...] = ()
    """values filled in by an estimate (e.g. ``relative_altitude_m``)"""
    notes: tuple[str, ...] = ()
    """warnings for the manifest, each naming the frame and the value used"""
    size_change: str = "unchanged"
    """EXIF frames: how the frame differs from the image the camera wrote (unchanged, cropped, resized, unknown)"""

    def record(self) -> dict[str, object]:
        """Returns the JSON-ready record written per frame into the roi manifest."""
        entry: dict[str, object] = {"cm": round(self.cm, 6), "source": self.source}
        if self.estimated:
            entry["estimated"] = list(self.estimated)
        if self.size_change != "unchanged":
            entry["size_change"] = self.size_change
        return entry


def geotiff_gsd_cm(info: GeoInfo) -> tuple[float | None, str | None]:
    """Returns (cm per pixel, None) from a GeoTIFF's transform and CRS, or (None, why not).

    A projected CRS: the pixel size in metres (its unit converted). A geographic CRS: the
    geodesic length on the CRS's ellipsoid of one pixel step in x and in y at the frame centre.
    """
    a, b, c, d, e, f = info.transform
    if info.crs is None:
        return None, "GeoTIFF has a transform but no CRS, so its unit is unknown"
    try:
        from pyproj import CRS
    except ImportError:
        return None, "reading the GSD of a GeoTIFF needs pyproj: pip install 'roadparse[geo]'"
    crs = CRS.from_user_input(info.crs)
    if crs.is_geographic:
        geod = crs.get_geod()
        if geod is None:
            return None, "GeoTIFF in a geographic CRS without an ellipsoid"
        col, row = info.width / 2, info.height / 2
        lon0, lat0 = a * col + b * row + c, d * col + e * row + f
        _, _, step_x = geod.inv(lon0, lat0, lon0 + a, lat0 + d)
        _, _, step_y = geod.inv(lon0, lat0, lon0 + b, lat0 + e)
        return 100.0 * (step_x + step_y) / 2, None
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    size_x, size_y = math.hypot(a, d), math.hypot(b, e)
    return 100.0 * unit * (size_x + size_y) / 2, None


def _from_exif(path: Path, setting: float | None, setting_name: str, warn: bool) -> FrameGsd:
    meta = read_drone_metadata(path, warn=warn)
    notes: list[str] = []
    unsure = [name for name in meta.estimated if name in ("relative_altitude_m", "focal_mm", "sensor_width_mm")]
    if unsure and setting is not None:
        note = f"{path.name}: EXIF GSD would rest on estimated {', '.join(unsure)}; using {setting_name} = {setting:g} cm/px"
        return FrameGsd(setting, "setting", notes=(note,), size_change=meta.size_change)
    value = meta.gsd_cm()
    if meta.size_change == "unknown":
        notes.append(f"{path.name}: its size is neither a crop nor a resize of the image in its EXIF; "
                     f"GSD {value:.3g} cm/px assumes its own width spans the sensor: set {setting_name} to override")
    if unsure:
        notes.append(
            f"{path.name}: GSD {value:.3g} cm/px from EXIF with estimated {', '.join(unsure)} "
            f"(altitude {meta.relative_altitude_m:g} m, sensor {meta.sensor_width_mm:g} mm, focal {meta.focal_mm:g} mm); "
            f"set {setting_name} to override"
        )
    if meta.off_nadir_deg > 10:
        notes.append(f"{path.name}: gimbal {meta.off_nadir_deg:.0f}° from nadir; GSD {value:.3g} cm/px holds at the image centre only")
    return FrameGsd(value, "exif", estimated=tuple(meta.estimated), notes=tuple(notes), size_change=meta.size_change)


def frame_gsd(
    path: str | Path, geo_info: GeoInfo | None, setting: float | None, setting_name: str = "roi.gsd_cm",
    *, log_notes: bool = True,
) -> FrameGsd:
    """Returns a frame's GSD from its GeoTIFF transform, its drone EXIF, ``setting`` or the default.

    Args:
        path: the frame file.
        geo_info: its GeoTIFF georeferencing (None for other images).
        setting: the user's ``roi.gsd_cm`` (None when not given).
        setting_name: the setting the notes tell to set (``predict.gsd_cm`` for predict).
        log_notes: log the notes as warnings (False: only return them, for a caller that summarises them).
    """
    path = Path(path)
    notes: list[str] = []
    if geo_info is not None:
        value, why = geotiff_gsd_cm(geo_info)
        if value is not None and value > 0:
            return FrameGsd(value, "geotiff")
        notes.append(f"{path.name}: {why}; GSD not taken from the GeoTIFF")
    if has_camera_exif(path):
        found = _from_exif(path, setting, setting_name, warn=log_notes)
        result = FrameGsd(found.cm, found.source, found.estimated, tuple(notes) + found.notes, found.size_change)
    elif setting is not None:
        result = FrameGsd(setting, "setting", notes=tuple(notes))
    else:
        notes.append(
            f"{path.name}: no GSD in the file (no GeoTIFF transform, no drone EXIF); using the paper's "
            f"{DEFAULT_GSD_CM} cm/px: set {setting_name} to your frames' GSD"
        )
        result = FrameGsd(DEFAULT_GSD_CM, "default", notes=tuple(notes))
    for note in result.notes if log_notes else ():
        log.warning(note)
    return result
