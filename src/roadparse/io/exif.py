"""Drone photo metadata from EXIF and XMP: position, height above take-off, gimbal angles, camera.

:func:`read_drone_metadata` returns a typed :class:`DroneMetadata` record that the
georeferencing (``roadparse.io.georef``) and the ground sampling distance
(:meth:`DroneMetadata.gsd_cm`) read. Missing or implausible values never raise: they are
replaced by a documented estimate, named in ``estimated``, and a warning naming the frame
and the value used is logged.

Where each value comes from:

| value | source |
|---|---|
| lat, lon | EXIF GPS IFD (GPSLatitude/Ref, GPSLongitude/Ref) |
| relative altitude | XMP ``drone-dji:RelativeAltitude`` (height above the take-off point) |
| gimbal yaw / pitch | XMP ``drone-dji:GimbalYawDegree`` / ``GimbalPitchDegree`` (pitch -90 = nadir); yaw falls back to ``FlightYawDegree`` |
| focal length | EXIF FocalLength; else the camera table |
| sensor width | the camera table (by EXIF Model); else EXIF FocalPlaneXResolution; else 36 mm × focal / FocalLengthIn35mmFilm |
| capture size | EXIF PixelXDimension / PixelYDimension (the image as the camera wrote it); the camera table's full-sensor image size |

The camera table (:data:`CAMERAS`) lists a few common survey cameras by their EXIF
``Model``; extend it or pass a sensor width where yours is missing.

**Cropped and resized frames.** The GSD formula needs the number of pixels across the sensor
width, which is the width of the image the camera wrote, not of a frame cropped from it
afterwards. A frame is compared with the size the camera wrote (EXIF PixelXDimension /
PixelYDimension), and that size with the camera's full-sensor image size when the table knows
it (cameras write 16:9 or 4:3 images from a 3:2 sensor by cropping it). Each comparison is
decided by the aspect ratio (:func:`size_change`):

- the same size (or its 90° turn): unchanged;
- the same aspect ratio (within 1 %), another size: **resized** — the GSD scales by the ratio
  of widths;
- another aspect ratio, no side larger: **cropped** — cropping keeps the GSD of the capture;
- another aspect ratio with a larger side: **unknown** — the frame's own width is used, with
  a warning.

So a frame cropped to exactly the capture's aspect ratio reads as resized (set ``roi.gsd_cm``
for such frames); and a frame that was cropped and then resized reads as cropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import SupportsFloat

from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_ALTITUDE_M = 30.0
"""Height above ground used when a frame has no usable relative altitude (a warning says so)."""


@dataclass(frozen=True)
class Camera:
    """A camera's sensor size, its lens's focal length (for lenses that have one) and its full-sensor image size."""

    sensor_width_mm: float
    sensor_height_mm: float
    focal_mm: float | None
    image_size: tuple[int, int] | None = None
    """(width, height) in pixels of the largest image the sensor gives (None: unknown)"""


CAMERAS: dict[str, Camera] = {
    # EXIF Model: sensor (mm), the fixed lens's focal length (mm) and the full-sensor image (px), from the makers' specifications
    "FC6310": Camera(13.2, 8.8, 8.8, (5472, 3648)),  # DJI Phantom 4 Pro / V2.0 (1")
    "FC6310S": Camera(13.2, 8.8, 8.8, (5472, 3648)),  # DJI Phantom 4 Pro V2.0
    "FC6310R": Camera(13.2, 8.8, 8.8, (5472, 3648)),  # DJI Phantom 4 RTK
    "L1D-20c": Camera(13.2, 8.8, 10.26, (5472, 3648)),  # DJI Mavic 2 Pro (Hasselblad, 1")
    "FC7303": Camera(6.17, 4.55, 4.49, (4000, 3000)),  # DJI Mini 2 (1/2.3")
    "M3E": Camera(17.3, 13.0, 12.29, (5280, 3956)),  # DJI Mavic 3 Enterprise (4/3")
    "ZenmuseP1": Camera(35.9, 24.0, None, (8192, 5460)),  # DJI Zenmuse P1 (full frame; 24/35/50 mm lenses)
    "ILCE-7RM2": Camera(35.9, 24.0, None, (7952, 5304)),  # Sony A7R II (full frame)
    "ILCE-7RM3": Camera(35.9, 24.0, None, (7952, 5304)),  # Sony A7R III (full frame)
}
DEFAULT_CAMERA = Camera(13.2, 8.8, 8.8)
"""Used for an unknown camera without sensor information (a warning says so): a 1" sensor, 8.8 mm."""

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_MAKE, _MODEL = 0x010F, 0x0110
_FOCAL, _FOCAL_35MM = 0x920A, 0xA405
_FOCAL_PLANE_XRES, _FOCAL_PLANE_UNIT = 0xA20E, 0xA210
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003  # PixelXDimension / PixelYDimension (ExifImageWidth / ExifImageHeight)
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0}  # FocalPlaneResolutionUnit: inch, cm, mm


@dataclass(frozen=True)
class DroneMetadata:
    """Where and how a drone frame was taken; ``estimated`` names the values that were filled in."""

    frame: str
    width: int
    """image width in pixels"""
    height: int
    """image height in pixels"""
    lat: float | None
    """WGS84 latitude in degrees (None: no GPS)"""
    lon: float | None
    """WGS84 longitude in degrees (None: no GPS)"""
    relative_altitude_m: float
    """height above the take-off point in metres, used as height above the ground"""
    yaw_deg: float
    """gimbal yaw: the direction the top of the image points, degrees clockwise from true north"""
    pitch_deg: float
    """gimbal pitch in degrees: -90 looks straight down (nadir), 0 at the horizon"""
    focal_mm: float
    sensor_width_mm: float
    camera_model: str
    estimated: tuple[str, ...] = ()
    orientation: int = 1
    """EXIF orientation (1: stored upright; other values: viewers rotate or mirror the pixels)"""
    sensor_width_px: float | None = None
    """this frame's pixels across ``sensor_width_mm`` (None: the frame's width, i.e. as captured)"""
    capture_size: tuple[int, int] | None = None
    """(width, height) of the image as the camera wrote it (EXIF PixelX/YDimension; None: not in the EXIF)"""
    size_change: str = "unchanged"
    """how the frame differs from the image the camera wrote: unchanged, cropped, resized or unknown (:func:`size_change`)"""

    @property
    def off_nadir_deg(self) -> float:
        """Returns how far the optical axis is from straight down, in degrees."""
        return abs(90.0 + self.pitch_deg)

    def gsd_cm(self) -> float:
        """Returns the ground sampling distance at the image centre in cm per pixel (nadir pinhole model).

        GSD = height × sensor width / (focal length × pixels across the sensor width); the pixels are
        the image width as captured, scaled when the frame was resized, unchanged when it was cropped.
        """
        across = self.sensor_width_px or self.width
        return 100.0 * self.relative_altitude_m * self.sensor_width_mm / (self.focal_mm * across)


def gsd_cm(path: str | Path) -> float:
    """Returns the ground sampling distance in cm/px of a drone frame from its EXIF/XMP."""
    return read_drone_metadata(path).gsd_cm()


def _xmp_value(xmp: str, key: str) -> float | None:
    """Returns the number of an XMP property written as attribute (key="1.0") or element (<key>1.0</key>)."""
    match = re.search(rf'{key}\s*=\s*"([^"]*)"', xmp) or re.search(rf"{key}>\s*([^<]*)<", xmp)
    if match is None:
        return None
    try:
        return float(match.group(1).strip())
    except ValueError:
        return None


def _degrees(dms: object, ref: object) -> float | None:
    """Returns signed decimal degrees from an EXIF (deg, min, sec) triple and its N/S/E/W reference."""
    if not isinstance(dms, Iterable):
        return None
    try:
        deg, minutes, seconds = (float(v) for v in dms)
    except (TypeError, ValueError):
        return None
    value = deg + minutes / 60.0 + seconds / 3600.0
    return -value if str(ref).strip().upper() in ("S", "W") else value


def _positive(value: object) -> float | None:
    if not isinstance(value, SupportsFloat | str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number > 0 else None


ASPECT_TOLERANCE = 0.01
"""Relative difference of aspect ratios under which two image sizes count as the same shape (resized, not cropped)."""


def size_change(size: tuple[int, int], reference: tuple[int, int]) -> tuple[str, float]:
    """Returns how an image of ``size`` was made from one of ``reference`` size, and its pixels per reference pixel.

    ``("unchanged", 1)`` for the same size or its 90° turn; ``("resized", width / reference
    width)`` for the same aspect ratio (within :data:`ASPECT_TOLERANCE`); ``("cropped", 1)`` for
    another aspect ratio with no side larger than the reference's (cropping keeps the pixel
    size); ``("unknown", 1)`` otherwise.
    """
    (width, height), (ref_width, ref_height) = size, reference
    if (width, height) in ((ref_width, ref_height), (ref_height, ref_width)):
        return "unchanged", 1.0
    if abs((width / height) / (ref_width / ref_height) - 1) <= ASPECT_TOLERANCE:
        return "resized", width / ref_width
    if abs((height / width) / (ref_width / ref_height) - 1) <= ASPECT_TOLERANCE:  # resized and turned by 90°
        return "resized", height / ref_width
    if max(width, height) <= max(ref_width, ref_height) and min(width, height) <= min(ref_width, ref_height):
        return "cropped", 1.0
    return "unknown", 1.0


def _capture_size(exif_ifd: dict) -> tuple[int, int] | None:
    """Returns (PixelXDimension, PixelYDimension) from the EXIF IFD, or None when missing or not positive."""
    width, height = _positive(exif_ifd.get(_PIXEL_X)), _positive(exif_ifd.get(_PIXEL_Y))
    if width is None or height is None:
        return None
    return int(width), int(height)


def _pixels_across_sensor(size: tuple[int, int], capture: tuple[int, int] | None, camera: Camera | None) -> tuple[float, str]:
    """Returns (the frame's pixels across the sensor width, the frame's size change against the capture).

    The capture's pixels across the sensor are the camera's full-sensor width when the table
    knows it (scaled when the capture was resized, unchanged when the camera cropped the
    sensor), else the capture's width; the frame's are those scaled by its own size change. A
    frame of ``unknown`` change keeps its own width.
    """
    full = camera.image_size if camera else None
    capture = capture or full or size
    capture_across = float(capture[0])
    if full is not None:
        change, scale = size_change(capture, full)
        if change != "unknown":
            capture_across = full[0] * scale
    change, scale = size_change(size, capture)
    if change == "unknown":
        return float(size[0]), change
    return capture_across * scale, change


def _sensor_width(exif_ifd: dict, width: int, focal_mm: float | None) -> float | None:
    """Returns the sensor width in mm from FocalPlaneXResolution (``width``: the capture's pixels across the
    sensor), else from the 35 mm equivalent focal length."""
    xres = _positive(exif_ifd.get(_FOCAL_PLANE_XRES))
    if xres is not None:
        return width / xres * _UNIT_MM.get(int(exif_ifd.get(_FOCAL_PLANE_UNIT, 2)), 25.4)
    focal_35 = _positive(exif_ifd.get(_FOCAL_35MM))
    if focal_35 is not None and focal_mm is not None:
        return 36.0 * focal_mm / focal_35
    return None


def read_drone_metadata(path: str | Path, default_altitude_m: float = DEFAULT_ALTITUDE_M, *, warn: bool = True) -> DroneMetadata:
    """Returns the position, height, gimbal angles and camera of a drone frame from its EXIF/XMP.

    Never raises for missing or bad metadata: a missing or non-positive relative altitude
    becomes ``default_altitude_m``, an unknown camera the table's default, a missing yaw 0
    and a missing pitch -90 (nadir); each is logged as a warning naming the frame and the
    value used (``warn=False``: not logged, for callers that summarise them), and listed in
    ``estimated``. Missing GPS leaves lat/lon None. A frame cropped or resized after capture is
    recognised by its size (see the module docstring).

    Raises:
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = image.getexif()
            orientation = int(exif.get(0x0112, 1) or 1)
            xmp_raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    except (OSError, Image.DecompressionBombError) as exc:  # a bomb is refused by the pixel reader, named there
        raise ValueError(f"{path}: cannot read image metadata: {exc}") from None
    xmp = xmp_raw.decode("utf-8", "replace") if isinstance(xmp_raw, bytes) else str(xmp_raw)
    gps, exif_ifd = exif.get_ifd(_GPS_IFD), exif.get_ifd(_EXIF_IFD)
    model = str(exif.get(_MODEL, "") or "").strip("\x00 ")
    estimated: list[str] = []

    def estimate(name: str, value: float, why: str) -> float:
        if warn:
            log.warning("%s: %s; using %s = %g", path.name, why, name, value)
        estimated.append(name)
        return value

    lat = _degrees(gps.get(2), gps.get(1, "N"))
    lon = _degrees(gps.get(4), gps.get(3, "E"))
    if lat is None or lon is None:
        log.info("%s: no GPS position in EXIF; the frame cannot be georeferenced", path.name)
    altitude = _xmp_value(xmp, "RelativeAltitude")
    if altitude is None or altitude <= 0:
        why = "no relative altitude in XMP" if altitude is None else f"relative altitude {altitude:g} m is not above the ground"
        altitude = estimate("relative_altitude_m", default_altitude_m, why)
    yaw = _xmp_value(xmp, "GimbalYawDegree")
    if yaw is None:
        yaw = _xmp_value(xmp, "FlightYawDegree")
    if yaw is None:
        yaw = estimate("yaw_deg", 0.0, "no gimbal or flight yaw in XMP")
    pitch = _xmp_value(xmp, "GimbalPitchDegree")
    if pitch is None:
        pitch = estimate("pitch_deg", -90.0, "no gimbal pitch in XMP (assuming a nadir frame)")
    camera = CAMERAS.get(model)
    focal = _positive(exif_ifd.get(_FOCAL)) or (camera.focal_mm if camera else None)
    if focal is None:
        focal = estimate("focal_mm", DEFAULT_CAMERA.focal_mm or 8.8, f"no focal length for camera {model or 'unknown'!r}")
    capture = _capture_size(exif_ifd)
    across, change = _pixels_across_sensor((width, height), capture, camera)
    sensor = camera.sensor_width_mm if camera else _sensor_width(exif_ifd, (capture or (width, height))[0], focal)
    if sensor is None:
        sensor = estimate("sensor_width_mm", DEFAULT_CAMERA.sensor_width_mm,
                          f"camera {model or 'unknown'!r} is not in roadparse.io.exif.CAMERAS and has no sensor size in EXIF")
    return DroneMetadata(
        frame=path.name, width=width, height=height, lat=lat, lon=lon, relative_altitude_m=altitude,
        yaw_deg=yaw, pitch_deg=pitch, focal_mm=focal, sensor_width_mm=sensor, camera_model=model,
        estimated=tuple(estimated), orientation=orientation, sensor_width_px=across, capture_size=capture,
        size_change=change,
    )


def read_exif(path: str | Path) -> Image.Exif | None:
    """Returns an image file's EXIF (cheap: reads the header only), or None when it cannot be opened.

    A decompression-bomb header counts as unreadable here: the pixel reader refuses that
    frame and names it (``roadparse.io.images``).
    """
    try:
        with Image.open(path) as image:
            return image.getexif()
    except (OSError, Image.DecompressionBombError):
        return None


def has_gps_position(path: str | Path) -> bool:
    """True when an image file carries an EXIF GPS latitude and longitude."""
    exif = read_exif(path)
    gps = exif.get_ifd(_GPS_IFD) if exif is not None else {}
    return 2 in gps and 4 in gps


def has_camera_exif(path: str | Path) -> bool:
    """True when an image's EXIF names a camera model or a focal length (a photo, not a rendering)."""
    exif = read_exif(path)
    return exif is not None and (bool(exif.get(_MODEL)) or _FOCAL in exif.get_ifd(_EXIF_IFD))
