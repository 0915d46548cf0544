"""GeoTIFF reading with rasterio (an optional extra): windows, reduced overviews, per-tile transforms.

Georeferenced frames keep their CRS and affine transform through the roi stage:
each tile records the transform of its own top-left pixel, so predictions written
per tile land where they belong in a GIS. rasterio is imported inside the
functions; without it :func:`read_geo_info` says how to install it.

Transforms are GDAL-style affine coefficients ``(a, b, c, d, e, f)`` mapping pixel
``(col, row)`` to ``(x, y) = (a*col + b*row + c, d*col + e*row + f)`` (rasterio's
``Affine`` order).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.io.images import bands_to_rgb_uint8
from roadparse.io.samples import Declared, SampleScale, nodata_pixels, sample_scale, with_alpha

GEO_SUFFIXES = (".tif", ".tiff")
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class GeoReadError(ValueError):
    """A georeferenced image that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class GeoInfo:
    """What a GeoTIFF says about itself, read from its header."""

    width: int
    height: int
    bands: int
    dtype: str
    crs: str | None
    """CRS as WKT, or None when the file has a transform but no CRS."""
    transform: tuple[float, float, float, float, float, float]


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError:
        raise GeoReadError(
            "reading GeoTIFFs with their georeferencing needs rasterio: pip install 'roadparse[geo]' (or pip install rasterio)"
        ) from None
    return rasterio


def rasterio_available() -> bool:
    """True when rasterio can be imported."""
    try:
        _rasterio()
    except GeoReadError:
        return False
    return True


def read_geo_info(path: str | Path) -> GeoInfo | None:
    """Returns the georeferencing of a TIFF, or None when it has neither a CRS nor a transform.

    Raises:
        GeoReadError: rasterio is missing, or the file cannot be opened by it.
    """
    path = Path(path)
    if path.suffix.lower() not in GEO_SUFFIXES:
        return None
    rasterio = _rasterio()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for plain TIFFs is expected here
        try:
            with rasterio.open(path) as source:
                a, b, c, d, e, f = (float(v) for v in tuple(source.transform)[:6])
                crs = source.crs.to_wkt() if source.crs else None
                info = GeoInfo(
                    source.width, source.height, source.count, str(source.dtypes[0]), crs, (a, b, c, d, e, f)
                )
        except rasterio.errors.RasterioIOError as exc:
            raise GeoReadError(f"{path}: cannot open with rasterio: {exc}") from None
    if info.crs is None and np.allclose(info.transform, IDENTITY):
        return None
    return info


def tile_transform(
    transform: tuple[float, ...], x: float, y: float, scale: float = 1.0
) -> tuple[float, float, float, float, float, float]:
    """Returns the affine transform of a tile whose top-left pixel is frame pixel (x, y).

    ``scale``: tile pixels per frame pixel (a resampled tile's pixels are ``1 / scale`` frame pixels).
    """
    a, b, c, d, e, f = transform[:6]
    return (a / scale, b / scale, a * x + b * y + c, d / scale, e / scale, d * x + e * y + f)


def frame_scaling(path: str | Path) -> SampleScale | None:
    """Returns how the GeoTIFF's samples are scaled to 8 bit, the same for every window of it: declared
    (``NBITS``) or from the range of a decimated read (no-data left out); None for 8-bit samples.

    Raises:
        GeoReadError: rasterio is missing, or the file cannot be read by it.
    """
    path = Path(path)
    stat = path.stat()
    return _frame_scaling(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _frame_scaling(path: str, mtime_ns: int, size: int) -> SampleScale | None:
    rasterio = _rasterio()
    from rasterio.enums import Resampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with rasterio.open(path) as source:
                if source.dtypes[0] == "uint8":
                    return None
                nbits = source.tags(ns="IMAGE_STRUCTURE").get("NBITS")
                declared = Declared(None, int(nbits) if nbits else None, source.nodata)
                step = max(1.0, max(source.width, source.height) / 2048)
                shape = (source.count, max(1, round(source.height / step)), max(1, round(source.width / step)))
                data = np.moveaxis(source.read(out_shape=shape, resampling=Resampling.nearest), 0, -1)[..., :3]
        except rasterio.errors.RasterioIOError as exc:
            raise GeoReadError(f"{path}: cannot read: {exc}") from None
    nodata = nodata_pixels(data, declared)
    return sample_scale(data, declared, None if nodata is None else ~nodata)


def read_window(path: str | Path, box: tuple[int, int, int, int], *, keep_nodata: bool = False) -> np.ndarray:
    """Returns the full-resolution pixels of box (x0, y0, x1, y1) as (h, w, 3) uint8, reading only that window.

    Samples are scaled as :func:`frame_scaling` says (the same in every window). With ``keep_nodata``, a
    window with no-data pixels (the file's nodata value or mask, an alpha band, NaN) comes back as
    (h, w, 4), alpha 0 where there is no data (see :func:`roadparse.io.samples.with_alpha`).
    """
    rasterio = _rasterio()
    from rasterio.windows import Window

    x0, y0, x1, y1 = box
    window = Window(x0, y0, x1 - x0, y1 - y0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with rasterio.open(path) as source:
                data = np.moveaxis(source.read(window=window), 0, -1)
                mask = source.dataset_mask(window=window) if keep_nodata else None
        except rasterio.errors.RasterioIOError as exc:
            raise GeoReadError(f"{path}: cannot read window {box}: {exc}") from None
    rgb = bands_to_rgb_uint8(data, frame_scaling(path))
    if mask is None:
        return rgb
    return with_alpha(rgb, nodata_pixels(data, alpha=mask))


def read_reduced(path: str | Path, long_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Returns ((h, w, 3) uint8 image with long side ``long_side``, full (width, height)).

    rasterio decimates while reading (and uses the file's overviews when it has them),
    so a large orthomosaic is never decoded at full resolution for the detector.
    """
    rasterio = _rasterio()
    from rasterio.enums import Resampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with rasterio.open(path) as source:
                width, height = source.width, source.height
                scale = long_side / max(width, height)
                out_shape = (
                    source.count,
                    max(1, round(height * scale)),
                    max(1, round(width * scale)),
                )
                data = source.read(out_shape=out_shape, resampling=Resampling.bilinear)
        except rasterio.errors.RasterioIOError as exc:
            raise GeoReadError(f"{path}: cannot read: {exc}") from None
    return bands_to_rgb_uint8(np.moveaxis(data, 0, -1), frame_scaling(path)), (width, height)
