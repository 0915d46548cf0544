"""Classes (names, colours) and label maps as palette PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from roadparse import yamlstrict
from roadparse.io.images import too_many_pixels_message
from roadparse.workspace import atomic_output

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Named classes with RGB colours; class id = position. Id 255 means ignore."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Returns the id of class ``name``; raises ValueError listing the valid names."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown class {name!r}; classes are: {', '.join(self.names)}") from None

    def palette(self) -> list[int]:
        """Returns a 768-entry PIL palette: class colours, black elsewhere, grey for ignore."""
        flat = [0] * 768
        for i, color in enumerate(self.colors):
            flat[3 * i : 3 * i + 3] = list(color)
        flat[3 * IGNORE_INDEX : 3 * IGNORE_INDEX + 3] = [40, 40, 40]
        return flat

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Returns (H, W, 3) uint8 colours of a (H, W) uint8 label map."""
        table = np.array(self.palette(), dtype=np.uint8).reshape(256, 3)
        return table[label]


def load_classes(path: str | Path | None = None) -> ClassSet:
    """Returns the classes in a YAML file ``classes: [{name, color}, ...]``, or the built-in road classes.

    Raises:
        ValueError: the file is missing, malformed, or has more than 255 classes.
    """
    if path is None:
        text = resources.files("roadparse.data").joinpath("classes.yaml").read_text()
        source = "built-in classes"
    else:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"{path}: classes file not found")
        text = path.read_text()
        source = str(path)
    try:
        data = yamlstrict.load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from None
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: expected 'classes:' followed by a list of {{name, color}}")
    if len(entries) >= IGNORE_INDEX:
        raise ValueError(f"{source}: at most 254 classes, got {len(entries)}")
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{source}: class #{i} has no name")
        color = entry.get("color", [(37 * i) % 256, (91 * i) % 256, (173 * i) % 256])
        if not (isinstance(color, list) and len(color) == 3 and all(0 <= int(c) <= 255 for c in color)):
            raise ValueError(f"{source}: class {entry['name']!r} colour must be [R, G, B] in 0..255")
        names.append(str(entry["name"]))
        red, green, blue = (int(c) for c in color)
        colors.append((red, green, blue))
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: class names must be unique")
    return ClassSet(tuple(names), tuple(colors))


def write_label_png(path: str | Path, label: np.ndarray, classes: ClassSet) -> None:
    """Writes a (H, W) uint8 label map as a palette PNG, atomically."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label map must be (H, W) uint8, got {label.shape} {label.dtype}")
    image = Image.fromarray(label, mode="P")
    image.putpalette(classes.palette())
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")


def read_label_png(path: str | Path) -> np.ndarray:
    """Returns the (H, W) uint8 ids of a palette or greyscale label PNG.

    Raises:
        ValueError: the file is missing, not an image, or an RGB image (ids are ambiguous).
    """
    path = Path(path)
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise ValueError(f"{path}: label file not found") from None
    except Image.DecompressionBombError:
        raise ValueError(too_many_pixels_message(path)) from None
    except UnidentifiedImageError:
        empty = path.stat().st_size == 0
        raise ValueError(f"{path}: {'file is empty' if empty else 'not an image (unrecognised format)'}") from None
    except OSError as exc:
        reason = exc.strerror if exc.errno is not None else str(exc)
        raise ValueError(f"{path}: not a readable label image: {reason}") from None
    if image.mode not in ("P", "L"):
        raise ValueError(f"{path}: label maps must be palette or greyscale PNGs, got mode {image.mode}")
    return np.asarray(image, dtype=np.uint8)
