"""A generated corpus of bad (and awkward but valid) input files, shared by the reliability tests.

Each case is written by :func:`write_images` (image inputs) or :func:`write_texts` (YAML
inputs: merge maps, config files) into a folder; the tests hold the exact outcome expected
of each stage that reads it.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = (96, 64)
"""(width, height) of the valid images of the corpus."""


def _rgb(seed: int) -> np.ndarray:
    width, height = IMAGE_SIZE
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 95, dtype=np.uint8) + rng.integers(0, 20, (height, width, 3), dtype=np.uint8)
    image[:, width // 2 : width // 2 + 6] = 235  # a white stripe
    return image


def png_header_only(path: Path, width: int, height: int) -> None:
    """Writes a PNG whose header declares ``width`` x ``height`` RGB pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def write_images(folder: Path) -> dict[str, Path]:
    """Writes the image corpus into ``folder``; returns case name -> path (``unreadable`` only when not root)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}

    def case(name: str, filename: str) -> Path:
        cases[name] = folder / filename
        return cases[name]

    Image.fromarray(_rgb(0)).save(case("valid", "a_valid.png"))
    Image.fromarray(_rgb(1)).save(case("unicode", "b_straße_ü路.png"))
    full = folder / "full.png"
    Image.fromarray(_rgb(2)).save(full)
    case("truncated", "c_truncated.png").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    case("empty", "d_empty.png").write_bytes(b"")
    case("not_image", "e_not_image.png").write_text("this is not an image\n")
    Image.fromarray(_rgb(3)[:1, :1]).save(case("one_pixel", "f_one_pixel.png"))
    rgba = np.dstack([_rgb(4), np.full(_rgb(4).shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(case("rgba", "g_rgba.png"))
    grey16 = (_rgb(5)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(grey16).save(case("sixteen_bit", "h_sixteen_bit.png"))
    Image.fromarray(_rgb(6)).convert("CMYK").save(case("cmyk", "i_cmyk.jpg"), quality=95)
    png_header_only(case("bomb", "j_bomb.png"), 60000, 60000)
    loop = case("symlink_loop", "k_loop.png")
    os.symlink(loop.name, loop)
    if os.geteuid() != 0:
        Image.fromarray(_rgb(7)).save(case("unreadable", "l_unreadable.png"))
        os.chmod(cases["unreadable"], 0)
    return cases


def write_texts(folder: Path, valid: str) -> dict[str, Path]:
    """Writes the YAML-file corpus (merge maps, config files) into ``folder``; ``valid`` is a good file's text."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {
        "valid": folder / "valid.yaml",
        "unicode": folder / "straße_ü路.yaml",
        "empty": folder / "empty.yaml",
        "binary": folder / "binary.yaml",
        "truncated": folder / "truncated.yaml",
        "not_mapping": folder / "list.yaml",
        "folder": folder / "folder.yaml",
        "symlink_loop": folder / "loop.yaml",
    }
    cases["valid"].write_text(valid)
    cases["unicode"].write_text(valid)
    cases["empty"].write_bytes(b"")
    cases["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    cases["truncated"].write_text(valid[: valid.index(":", valid.index(":") + 1) + 1] + " {a: [1,")
    cases["not_mapping"].write_text("- a\n- b\n")
    cases["folder"].mkdir()
    os.symlink(cases["symlink_loop"].name, cases["symlink_loop"])
    if os.geteuid() != 0:
        cases["unreadable"] = folder / "unreadable.yaml"
        cases["unreadable"].write_text(valid)
        os.chmod(cases["unreadable"], 0)
    return cases
