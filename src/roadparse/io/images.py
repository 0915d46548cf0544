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


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Returns a PIL image as (H, W, 3) uint8 RGB: 16-bit scaled, grey/palette expanded, alpha dropped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(array[..., None], 3, axis=2)
    if mode == "RGBA" or (mode == "P" and "transparency" in image.info) or mode == "LA":
        image = image.convert("RGBA").convert("RGB")
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _read_tiff_array(path: Path) -> np.ndarray | None:
    """Reads multi-band or 16-bit RGB TIFFs PIL cannot convert; None when PIL can do it."""
    try:
        import tifffile  # optional
    except ImportError:
        return None
    data = tifffile.imread(path)
    if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[2] not in (3, 4):
        data = np.moveaxis(data, 0, -1)
    return data


def bands_to_rgb_uint8(data: np.ndarray) -> np.ndarray:
    """Returns (H, W, 3) uint8 RGB from (H, W) or (H, W, B) samples of any integer or float type.

    The first three bands (one or two bands: the first as grey); 16-bit samples scaled by
    65535, other non-uint8 types by their maximum; NaN counts as 0. The one converter of
    raster samples to RGB (TIFFs PIL cannot convert, GeoTIFF windows, predict inputs).
    """
    if data.ndim == 2:
        data = data[..., None]
    data = data[..., :3] if data.shape[2] >= 3 else np.repeat(data[..., :1], 3, axis=2)
    if data.dtype != np.uint8:
        high = 65535.0 if data.dtype == np.uint16 else max(float(np.nanmax(data)), 1.0)
        scaled = np.nan_to_num(data.astype(np.float64)) / high * 255.0 + 0.5
        data = np.clip(scaled, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(data)


def read_image(path: str | Path) -> np.ndarray:
    """Returns the image at ``path`` as (H, W, 3) uint8 RGB, EXIF orientation applied.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or non-image file.
    """
    path = Path(path)
    image = _open(path)
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb_uint8(image)
    except (OSError, ValueError, SyntaxError) as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            data = _read_tiff_array(path)
            if data is not None:
                return bands_to_rgb_uint8(data)
        raise ImageReadError(f"{path}: corrupt or truncated image: {exc}") from None


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
        image = ImageOps.exif_transpose(image)
        target = reduced_size(full_w, full_h, long_side)
        rgb = image if image.mode == "RGB" else Image.fromarray(to_rgb_uint8(image))
        rgb = rgb.resize(target, Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(rgb, dtype=np.uint8), (full_w, full_h)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image: {exc}") from None


def resample_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Returns an (H, W, 3) uint8 image resized to ``size`` (w, h): area averaging down, bicubic up.

    The one resampling of frames to a working GSD (``roi.target_gsd_cm`` tiles, ``predict.resample``).
    """
    import cv2

    if (image.shape[1], image.shape[0]) == size:
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Writes (H, W, 3) uint8 RGB atomically; the format follows the suffix (PNG, JPEG, TIFF)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image suffix (use .png, .jpg or .tif)")
    pil = Image.fromarray(np.ascontiguousarray(image))
    with atomic_output(path) as tmp:
        kwargs = {"quality": quality} if fmt == "JPEG" else {"compress_level": 1} if fmt == "PNG" else {}
        pil.save(tmp, format=fmt, **kwargs)
