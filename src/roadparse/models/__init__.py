"""Model backends, one factory module per family (detector, filter, mask generator, encoder, segmenter).

Everything is loaded by Hugging Face id or local path through :func:`load_pretrained`,
so the code users run with a hub id is the code tests run on tiny models saved to a
temporary folder. Heavy imports stay inside the builders.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message says how to give a local path."""


def resolve_device(name: str = "auto") -> Any:
    """Returns a ``torch.device``: ``auto`` picks CUDA when available, else CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_INT_MAX = 2**31 - 1


def retain_freed_memory(limit: int = 1 << 30) -> bool:
    """Asks glibc to keep freed blocks of up to ``limit`` bytes for reuse instead of returning them to the OS.

    SAM's decoder and image encoder allocate and free tensors of hundreds of MB per point
    chunk and per block; by default glibc maps each one fresh and its first touch costs page
    faults (measured: decoding 15 % and encoding ~5 % of the time; 420k faults per 256 points
    without it). The process keeps its peak memory mapped afterwards (up to 2 GB of free heap:
    ``mallopt`` values are C ints). Returns False where this is not glibc (nothing changes).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # both are C ints: larger values would wrap
    trim = min(4 * limit, _INT_MAX)  # free space kept at the top of the heap before it is given back
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, min(limit, _INT_MAX))) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))


def looks_like_path(name_or_path: str | Path) -> bool:
    """True when a model name is a local path (exists, or starts with ``.``, ``/`` or ``~``), not a hub id."""
    text = str(name_or_path)
    return text.startswith((".", "/", "~")) or Path(text).expanduser().exists()


def load_pretrained(cls: Any, name_or_path: str | Path, **kwargs: Any) -> Any:
    """Returns ``cls.from_pretrained(name_or_path, **kwargs)`` with a clear error when it cannot load.

    Raises:
        ModelLoadError: the path does not exist, or the id is not in the local cache and
            the hub is not reachable (or ``HF_HUB_OFFLINE=1``).
    """
    text = str(name_or_path)
    looks_local = looks_like_path(text)
    if looks_local and not Path(text).expanduser().exists():
        raise ModelLoadError(f"model path {text!r} does not exist")
    try:
        return cls.from_pretrained(str(Path(text).expanduser()) if looks_local else text, **kwargs)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = (
            f"could not load {cls.__name__} from {text!r}: {exc}\n"
            f"If this machine has no access to the Hugging Face hub{' (HF_HUB_OFFLINE is set)' if offline else ''}, "
            f"download the model elsewhere (e.g. `huggingface-cli download {text} --local-dir DIR`), "
            "copy DIR here and give its path instead of the id."
        )
        raise ModelLoadError(hint) from None
