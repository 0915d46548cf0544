"""Image reading: any common format into RGB uint8, fast reduced decoding of huge frames."""

from __future__ import annotations

import errno
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from roadparse.io.samples import (
    Declared,
    SampleScale,
    declared_in_tags,
    nodata_pixels,
    sample_scale,
    scaled_to_uint8,
    with_alpha,
)
from roadparse.workspace import atomic_output

log = logging.getLogger(__name__)

MAX_PIXELS_VARIABLE = "ROADPARSE_MAX_IMAGE_PIXELS"
"""Environment variable: the most pixels one image may declare (default 800 million)."""


def max_image_pixels() -> int:
    """Returns the most pixels one image may declare before it is refused as a decompression bomb.

    40-megapixel frames and orthomosaics of a few hundred megapixels are normal here; the
    default (800 million) is raised with the environment variable ``ROADPARSE_MAX_IMAGE_PIXELS``.
    """
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return 800_000_000
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_VARIABLE}={text!r}: expected a number of pixels, e.g. 4000000000") from None
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_VARIABLE}={text!r}: must be at least 1")
    return value


# PIL refuses images over twice MAX_IMAGE_PIXELS (DecompressionBombError) and warns over once;
# the limit is ours (max_image_pixels), so the warning in between is noise.
def _limit_at_import() -> int:
    try:
        return max_image_pixels()
    except ValueError as exc:
        log.warning("%s; using 800000000", exc)
        return 800_000_000


Image.MAX_IMAGE_PIXELS = _limit_at_import() // 2
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_LIMIT_LIFTED = threading.Lock()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class ImageListing:
    """The image files of a folder, and the entries named like images that are not files."""

    images: list[Path]
    skipped: dict[Path, str]
    """entry -> why it was left out (symlink loop, broken symlink, folder, special file)"""


def list_images(folder: str | Path) -> list[Path]:
    """Returns the image files in ``folder`` (non-recursive), sorted by name.

    Entries named like images that are not files are left out; :func:`scan_images` says which and why.

    Raises:
        ImageReadError: the folder does not exist or cannot be listed.
    """
    return scan_images(folder).images


def scan_images(folder: str | Path) -> ImageListing:
    """Returns the image files in ``folder`` (non-recursive, sorted by name) and the skipped entries.

    A file named directly is listed on its own. Entries with an image suffix that are
    not regular files (a symlink loop, a broken symlink, a folder) are skipped with a reason.

    Raises:
        ImageReadError: the folder does not exist or cannot be listed.
    """
    folder = Path(folder)
    if folder.is_file():
        return ImageListing([folder], {})
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        raise ImageReadError(f"{folder}: no such directory") from None
    except PermissionError:
        raise ImageReadError(f"{folder}: directory is not readable") from None
    images, skipped = [], {}
    for path in entries:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        reason = _not_a_file(path)
        if reason is None:
            images.append(path)
        else:
            log.warning("%s: skipped: %s", path, reason)
            skipped[path] = reason
    return ImageListing(images, skipped)


def _not_a_file(path: Path) -> str | None:
    """Returns why ``path`` cannot be read as an image file, or None for a regular file."""
    try:
        if path.is_file():
            return None
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symlink loop ({path.name} -> {os.readlink(path)}); point the link at an image or remove it"
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"broken symlink to {os.readlink(path)}; point the link at an image or remove it"
        return f"cannot be read: {exc.strerror}"
    if path.is_dir():
        return "a folder, not an image file (folders are not searched recursively)"
    return "not a regular file"


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty")
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        raise ImageReadError(too_many_pixels_message(path)) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (unrecognised format)") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open: {exc}") from None


def too_many_pixels_message(path: Path) -> str:
    """Returns the error for an image whose header declares more pixels than allowed: the file,
    its declared size, the limit and how to raise it."""
    with _LIMIT_LIFTED:  # only the header is read here, nothing is decoded
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as image:
                width, height = image.size
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    limit = 2 * previous if previous else max_image_pixels()
    return (
        f"{path}: the header declares {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than "
        f"the limit of {limit / 1e6:.0f} megapixels (a guard against decompression bombs: a damaged or hostile file). "
        f"If the image is real, raise the limit: {MAX_PIXELS_VARIABLE}={width * height} roadparse ..."
    )


_SAMPLE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
"""PIL modes of one band of 16-bit, 32-bit or float samples (scaled to 8 bit by :mod:`roadparse.io.samples`)."""


def declared_samples(image: Image.Image) -> Declared:
    """Returns what a PIL image's TIFF tags declare about its samples (nothing for other formats)."""
    tags = getattr(image, "tag_v2", None)
    return declared_in_tags(dict(tags)) if tags is not None else Declared()


def _pil_samples(image: Image.Image, declared: Declared) -> tuple[np.ndarray, np.ndarray | None, SampleScale | None]:
    """Returns ((H, W, 3) uint8 RGB, (H, W) bool no-data pixels or None, the scale of 16-bit/float samples or None)."""
    mode = image.mode
    if mode in _SAMPLE_MODES:
        array = np.asarray(image)
        nodata = nodata_pixels(array, declared)
        scale = sample_scale(array, declared, None if nodata is None else ~nodata)
        grey = scaled_to_uint8(array, scale)
        return np.repeat(grey[..., None], 3, axis=2), nodata, scale
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        rgb, alpha = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3]
    else:
        rgb = np.asarray(image if mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return rgb, nodata_pixels(rgb, declared, alpha), None


def to_rgb_uint8(image: Image.Image, declared: Declared | None = None) -> np.ndarray:
    """Returns a PIL image as (H, W, 3) uint8 RGB: 16-bit and float samples scaled by their bit depth or
    maximum (:func:`roadparse.io.samples.sample_scale`), grey/palette expanded, alpha dropped.

    ``declared``: what the file's tags say (read them before any transpose, which drops them).
    """
    return _pil_samples(image, declared_samples(image) if declared is None else declared)[0]


def _read_tiff_array(path: Path) -> tuple[np.ndarray, Declared] | None:
    """Reads multi-band or 16-bit RGB TIFFs PIL cannot convert, with their declared samples; None without tifffile."""
    try:
        import tifffile  # optional
    except ImportError:
        return None
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        tags = {tag.code: tag.value for tag in page.tags.values()}
        data = page.asarray()
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[2] not in (3, 4):
        data = np.moveaxis(data, 0, -1)
    return data, declared_in_tags(tags)


def bands_to_rgb_uint8(data: np.ndarray, scale: SampleScale | None = None) -> np.ndarray:
    """Returns (H, W, 3) uint8 RGB from (H, W) or (H, W, B) samples of any integer or float type.

    The first three bands (one or two bands: the first as grey); non-uint8 samples scaled by
    ``scale`` (default: :func:`roadparse.io.samples.sample_scale` of these samples: their bit
    depth by their range, floats by their maximum); NaN counts as 0. The one converter of raster
    samples to RGB (TIFFs PIL cannot convert, GeoTIFF windows, predict inputs).
    """
    if data.ndim == 2:
        data = data[..., None]
    data = data[..., :3] if data.shape[2] >= 3 else np.repeat(data[..., :1], 3, axis=2)
    if data.dtype != np.uint8:
        data = scaled_to_uint8(data, scale or sample_scale(data))
    return np.ascontiguousarray(data)


def read_image(path: str | Path, *, keep_nodata: bool = False) -> np.ndarray:
    """Returns the image at ``path`` as (H, W, 3) uint8 RGB, EXIF orientation applied.

    With ``keep_nodata``, an image with no-data pixels (alpha 0, NaN, the TIFF's GDAL nodata
    value) comes back as (H, W, 4): alpha 0 (and black) where there is no data, 255 elsewhere
    (:func:`roadparse.io.samples.split_alpha` splits it).

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or non-image file.
    """
    path = Path(path)
    image = _open(path)
    try:
        declared = declared_samples(image)  # before the transpose, which drops the tags
        image = ImageOps.exif_transpose(image)
        rgb, nodata, _ = _pil_samples(image, declared)
    except (OSError, ValueError, SyntaxError) as exc:
        found = _read_tiff_array(path) if path.suffix.lower() in (".tif", ".tiff") else None
        if found is None:
            raise ImageReadError(f"{path}: corrupt or truncated image: {exc}") from None
        data, declared = found
        nodata = nodata_pixels(data, declared)
        rgb = bands_to_rgb_uint8(data, sample_scale(data, declared, None if nodata is None else ~nodata))
    return with_alpha(rgb, nodata) if keep_nodata else rgb


def sample_scaling(path: str | Path) -> SampleScale | None:
    """Returns how the 16-bit or float samples of the image at ``path`` are scaled to 8 bit (as
    :func:`read_image` does), or None for 8-bit images and unreadable files."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode in _SAMPLE_MODES:
                return _pil_samples(image, declared_samples(image))[2]
            if image.mode != "RGB" or path.suffix.lower() not in (".tif", ".tiff"):
                return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        pass
    try:
        found = _read_tiff_array(path) if path.suffix.lower() in (".tif", ".tiff") else None
    except (OSError, ValueError):  # read_image names the problem
        return None
    if found is None or found[0].dtype == np.uint8:
        return None
    data, declared = found
    nodata = nodata_pixels(data, declared)
    return sample_scale(data, declared, None if nodata is None else ~nodata)


def image_size(path: str | Path) -> tuple[int, int]:
    """Returns (width, height) after EXIF orientation, reading only the header."""
    path = Path(path)
    image = _open(path)
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)  # PNG: reads up to the eXIf chunk, maybe the whole file
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image: {exc}") from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height


def reduced_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Returns (width, height) scaled so that the long side is ``long_side``, aspect kept."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_image_reduced(path: str | Path, long_side: int = 1024) -> tuple[np.ndarray, tuple[int, int]]:
    """Returns ((h, w, 3) uint8 image with long side ``long_side``, full (width, height)).

    JPEGs are decoded at a reduced DCT scale (1/2, 1/4 or 1/8) close to the target
    before the final resize, which is several times faster than a full decode of a
    40-megapixel frame. The full size is after EXIF orientation.

    Raises:
        ImageReadError: the file cannot be decoded.
    """
    path = Path(path)
    image = _open(path)
    full_w, full_h = image.size
    try:
        if image.format == "JPEG":
            scale = long_side / max(full_w, full_h)
            image.draft("RGB", (max(1, int(full_w * scale)), max(1, int(full_h * scale))))
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            full_w, full_h = full_h, full_w
        declared = declared_samples(image)  # before the transpose, which drops the tags
        image = ImageOps.exif_transpose(image)
        target = reduced_size(full_w, full_h, long_side)
        rgb = image if image.mode == "RGB" else Image.fromarray(to_rgb_uint8(image, declared))
        rgb = rgb.resize(target, Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(rgb, dtype=np.uint8), (full_w, full_h)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image: {exc}") from None


def resample_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Returns an (H, W, 3) (or RGBA, alpha 0: no data) uint8 image resized to ``size`` (w, h): area averaging
    down, bicubic up.

    The one resampling of frames to a working GSD (``roi.target_gsd_cm`` tiles, ``predict.resample``).
    """
    import cv2

    if (image.shape[1], image.shape[0]) == size:
        return image
    shrink = size[0] < image.shape[1]
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if resized.ndim == 3 and resized.shape[2] == 4:  # an alpha of no data: a pixel touching any is no data
        resized[..., 3] = np.where(resized[..., 3] == 255, 255, 0)
    return resized


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Writes (H, W, 3) uint8 RGB (or RGBA: PNG, TIFF) atomically; the format follows the suffix (PNG, JPEG, TIFF)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image suffix (use .png, .jpg or .tif)")
    pil = Image.fromarray(np.ascontiguousarray(image))
    with atomic_output(path) as tmp:
        kwargs = {"quality": quality} if fmt == "JPEG" else {"compress_level": 1} if fmt == "PNG" else {}
        pil.save(tmp, format=fmt, **kwargs)
