"""Raster samples as the file declares them: their bit depth, and which pixels hold no data.

Tiles and model inputs are 8-bit RGB. Integer samples are scaled by their actual bit depth:
the TIFF's ``MaxSampleValue``, else a ``BitsPerSample`` (GeoTIFF ``NBITS``) below the type's
width, else the smallest common depth (8, 10, 12, 14, 16 bits) that holds the data's maximum;
12-bit samples in 16-bit words scaled by 65535 would come out nearly black. Float samples are
scaled by their maximum. :class:`SampleScale` says which rule applied, for the frame's notes.

No-data pixels (the GeoTIFF's nodata value in every band, NaN in any band, alpha 0) are carried
as an alpha channel (0: no data) next to the RGB, so a tile written as PNG keeps them; the
stages never label or measure them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

BIT_DEPTHS = (8, 10, 12, 14, 16)
"""Sample depths of cameras and scanners, tried in order when the file declares none."""
TAG_BITS_PER_SAMPLE = 258
TAG_MAX_SAMPLE_VALUE = 281
TAG_GDAL_NODATA = 42113


@dataclass(frozen=True)
class Declared:
    """What a raster file says about its samples (each None when it says nothing)."""

    max_sample: float | None = None
    bits: int | None = None
    nodata: float | None = None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) and value else value


def declared_in_tags(tags: Mapping[int, Any] | None) -> Declared:
    """Returns the MaxSampleValue, BitsPerSample and GDAL_NODATA of TIFF tags (tag number -> value)."""
    if not tags:
        return Declared()
    max_sample, bits, nodata = (_first(tags.get(tag)) for tag in (TAG_MAX_SAMPLE_VALUE, TAG_BITS_PER_SAMPLE, TAG_GDAL_NODATA))
    try:
        nodata_value = float(str(nodata).strip("\x00 ")) if nodata is not None else None
    except ValueError:
        nodata_value = None
    return Declared(
        float(max_sample) if isinstance(max_sample, (int, float)) and max_sample > 0 else None,
        int(bits) if isinstance(bits, int) and bits > 0 else None,
        nodata_value,
    )


@dataclass(frozen=True)
class SampleScale:
    """How samples become 8 bit: ``high`` (and above) is 255, 0 (and below) is 0."""

    high: float
    why: str
    """which rule chose ``high``, for the frame's notes"""
    dtype: str = ""
    """the samples' type (``uint16``, ``float32``, ...)"""

    def note(self) -> str:
        """Returns the frame note naming the choice, e.g. ``uint16 samples scaled to 8 bit by 255/4095 (...)``."""
        return f"{self.dtype or 'the'} samples scaled to 8 bit by 255/{self.high:g} ({self.why})"


def sample_scale(data: np.ndarray, declared: Declared = Declared(), valid: np.ndarray | None = None) -> SampleScale:
    """Returns the scale of ``data`` samples (any shape): declared by the file, else from the data's range.

    ``valid``: (H, W) bool of the pixels that hold data (no-data pixels left out of the range).
    """
    if declared.max_sample is not None:
        return SampleScale(declared.max_sample, f"the file's MaxSampleValue {declared.max_sample:g}", str(data.dtype))
    values = data[valid] if valid is not None and valid.shape == data.shape[:2] else data
    if data.dtype.kind in "ui":
        width = np.iinfo(data.dtype).bits
        if declared.bits is not None and declared.bits < width:
            return SampleScale(float(2**declared.bits - 1), f"the file's {declared.bits} bits per sample", str(data.dtype))
        top = int(values.max()) if values.size else 0
        depth = next((d for d in BIT_DEPTHS if top <= 2**d - 1), width)
        why = f"{depth}-bit by the data's range: maximum {top}, no bit depth in the file"
        return SampleScale(float(2**depth - 1), why, str(data.dtype))
    finite = values[np.isfinite(values)] if values.size else values
    peak = float(finite.max()) if finite.size else 1.0
    return SampleScale(max(peak, 1.0), f"the data's maximum {peak:g}", str(data.dtype))


def scaled_to_uint8(data: np.ndarray, scale: SampleScale) -> np.ndarray:
    """Returns ``data`` scaled to uint8 by ``scale`` (NaN as 0)."""
    scaled = np.nan_to_num(data.astype(np.float64)) / scale.high * 255.0 + 0.5
    return np.clip(scaled, 0, 255).astype(np.uint8)


def nodata_pixels(data: np.ndarray, declared: Declared = Declared(), alpha: np.ndarray | None = None) -> np.ndarray | None:
    """Returns the (H, W) bool no-data pixels of (H, W) or (H, W, B) samples, or None when there are none.

    No data: NaN in any band, the declared nodata value in every band, or ``alpha`` 0.
    """
    bands = data if data.ndim == 3 else data[..., None]
    nodata = np.zeros(bands.shape[:2], dtype=bool)
    if bands.dtype.kind == "f":
        nodata |= np.isnan(bands).any(axis=2)
    if declared.nodata is not None:
        nodata |= (bands == declared.nodata).all(axis=2)
    if alpha is not None:
        nodata |= alpha == 0
    return nodata if nodata.any() else None


def with_alpha(rgb: np.ndarray, nodata: np.ndarray | None) -> np.ndarray:
    """Returns (H, W, 3) ``rgb`` as (H, W, 4) with alpha 0 (and black) on ``nodata``; unchanged when None."""
    if nodata is None:
        return rgb
    out = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., :3] = rgb
    out[nodata, :3] = 0
    out[..., 3] = np.where(nodata, 0, 255)
    return out


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns ((H, W, 3) RGB, (H, W) bool no-data pixels or None) of an RGB or RGBA (alpha 0: no data) image."""
    if image.ndim == 3 and image.shape[2] == 4:
        nodata = image[..., 3] < 255
        return np.ascontiguousarray(image[..., :3]), nodata if nodata.any() else None
    return image, None
