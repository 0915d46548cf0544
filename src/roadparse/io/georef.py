"""Approximate georeferencing of nadir drone JPEGs from their EXIF/XMP, in the frame's UTM zone.

A nadir frame is modelled as a pinhole camera looking straight down from its relative
altitude: every pixel covers GSD = altitude × sensor width / (focal × image width) metres,
the image centre lies below the GPS position (moved by altitude × tan(off-nadir angle) along
the gimbal yaw when the gimbal is tilted a little), and the top of the image points at the
gimbal yaw, turned from true north into UTM grid north (meridian convergence, computed
with pyproj). The result is an affine pixel → UTM transform that rasters (GeoTIFF, world
files) and vectors (the layer CRS) carry.

Expected error (what the model leaves out; no ground control):
- position: the GPS error, 1-3 m for a standard receiver, a few cm with RTK;
- scale: relative altitude is barometric and measured from the take-off point: 0.5-1 m of
  altitude error, or ground higher or lower than the take-off point, scales the footprint
  by Δh / h (1 m at 30 m: 3 %, i.e. 0.6 m at the edge of a 40 m footprint);
- rotation: gimbal yaw is good to 1-3°: 0.35-1 m at 20 m from the centre;
- tilt: frames up to :data:`MAX_OFF_NADIR_DEG` from nadir are accepted; the centre shift is
  corrected but not the perspective (keystone), which changes the scale across the frame by
  up to ±tan(off-nadir) × tan(half field of view) (10° and a 73° lens: ±13 %). Frames tilted
  further are refused (:class:`ObliqueFrameError`);
- lens distortion and terrain relief are ignored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from roadparse.io.exif import DroneMetadata, read_drone_metadata
from roadparse.workspace import atomic_write_text

log = logging.getLogger(__name__)

MAX_OFF_NADIR_DEG = 10.0
"""Frames whose gimbal pitch is further than this from -90° (nadir) are refused."""


class ObliqueFrameError(ValueError):
    """A frame too far from nadir for a flat footprint; the message names the pitch."""


class NoPositionError(ValueError):
    """A frame without a GPS position."""


@dataclass(frozen=True)
class Footprint:
    """Where a frame lies on the ground: its UTM CRS and the affine pixel → UTM transform."""

    epsg: int
    transform: tuple[float, float, float, float, float, float]
    """GDAL/rasterio order (a, b, c, d, e, f): x = a·col + b·row + c, y = d·col + e·row + f."""
    gsd_m: float
    centre: tuple[float, float]
    """(easting, northing) of the image centre in metres"""
    metadata: DroneMetadata

    def pixel_to_utm(self, col: float, row: float) -> tuple[float, float]:
        """Returns the (easting, northing) of a pixel position (pixel corners at integers)."""
        a, b, c, d, e, f = self.transform
        return a * col + b * row + c, d * col + e * row + f


def utm_epsg(lat: float, lon: float) -> int:
    """Returns the EPSG code of the WGS84 UTM zone holding (lat, lon) (Norway/Svalbard exceptions included)."""
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    if not infos:
        raise ValueError(f"no UTM zone for lat {lat}, lon {lon}")
    return int(infos[0].code)


def footprint(metadata: DroneMetadata, max_off_nadir_deg: float = MAX_OFF_NADIR_DEG) -> Footprint:
    """Returns the approximate ground footprint of a nadir frame in its UTM zone.

    Raises:
        ObliqueFrameError: the gimbal pitch is more than ``max_off_nadir_deg`` from -90°.
        NoPositionError: the frame has no GPS position.
    """
    from pyproj import Transformer

    if metadata.off_nadir_deg > max_off_nadir_deg:
        raise ObliqueFrameError(
            f"{metadata.frame}: gimbal pitch {metadata.pitch_deg:g}° is {metadata.off_nadir_deg:g}° from nadir (-90°); "
            f"only frames within {max_off_nadir_deg:g}° of nadir can be georeferenced as a flat footprint"
        )
    if metadata.lat is None or metadata.lon is None:
        raise NoPositionError(f"{metadata.frame}: no GPS position in EXIF; the frame cannot be georeferenced")
    if metadata.orientation != 1:
        raise ValueError(f"{metadata.frame}: EXIF orientation {metadata.orientation} (rotated or mirrored pixels) "
                         "is not supported for georeferencing; save the frame upright with orientation 1")
    if metadata.size_change in ("cropped", "unknown"):
        log.warning("%s: cropped after capture, so its centre need not be the GPS point: its footprint is placed there "
                    "and may be shifted by up to half the width that was cut away", metadata.frame)
    epsg = utm_epsg(metadata.lat, metadata.lon)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    east, north = to_utm.transform(metadata.lon, metadata.lat)
    # direction of true north on the UTM grid (meridian convergence), from a 10 m step north
    east_n, north_n = to_utm.transform(metadata.lon, metadata.lat + 1e-4)
    convergence = math.atan2(east_n - east, north_n - north)
    heading = math.radians(metadata.yaw_deg) + convergence  # grid bearing of the image's top
    shift = metadata.relative_altitude_m * math.tan(math.radians(metadata.off_nadir_deg))
    if metadata.pitch_deg > -90.0:  # tilted forward: the optical axis meets the ground ahead, along the yaw
        east, north = east + shift * math.sin(heading), north + shift * math.cos(heading)
    elif metadata.pitch_deg < -90.0:  # tilted past nadir: behind
        east, north = east - shift * math.sin(heading), north - shift * math.cos(heading)
    gsd = metadata.gsd_cm() / 100.0
    cos_h, sin_h = math.cos(heading), math.sin(heading)
    a, b, d, e = gsd * cos_h, -gsd * sin_h, -gsd * sin_h, -gsd * cos_h
    half_w, half_h = metadata.width / 2.0, metadata.height / 2.0
    c = east - a * half_w - b * half_h
    f = north - d * half_w - e * half_h
    return Footprint(epsg, (a, b, c, d, e, f), gsd, (east, north), metadata)


def georeference_frame(path: str | Path, max_off_nadir_deg: float = MAX_OFF_NADIR_DEG) -> Footprint:
    """Returns the footprint of a drone JPEG from its EXIF/XMP (see :func:`footprint` for the errors)."""
    return footprint(read_drone_metadata(path), max_off_nadir_deg)


def world_file_path(raster: str | Path) -> Path:
    """Returns the world-file path of a raster: ``.pgw`` for ``.png``, ``.jgw`` for ``.jpg``, ``.tfw``..."""
    raster = Path(raster)
    suffix = raster.suffix.lower()
    return raster.with_suffix(f".{suffix[1]}{suffix[-1]}w") if len(suffix) >= 3 else raster.with_suffix(".wld")


def write_world_file(raster: str | Path, transform: tuple[float, ...], crs_wkt: str | None = None) -> Path:
    """Writes the ESRI world file of ``raster`` and, given a CRS, ``<raster>.aux.xml`` holding it.

    A world file holds the affine transform of pixel *centres*: A, D, B, E, C, F, one per line;
    GDAL (and so QGIS) reads the CRS from the ``.aux.xml`` beside the raster.
    """
    a, b, c, d, e, f = transform[:6]
    centre_c, centre_f = c + 0.5 * a + 0.5 * b, f + 0.5 * d + 0.5 * e
    path = world_file_path(raster)
    atomic_write_text(path, "\n".join(f"{v:.10f}" for v in (a, d, b, e, centre_c, centre_f)) + "\n")
    if crs_wkt:
        from xml.sax.saxutils import escape

        aux = Path(raster).with_name(Path(raster).name + ".aux.xml")
        atomic_write_text(aux, f"<PAMDataset>\n  <SRS>{escape(crs_wkt)}</SRS>\n</PAMDataset>\n")
    return path
