"""Whether a Hugging Face model is in the local hub cache: file lookups only, no model loaded, no network.

The cache is the one ``from_pretrained`` reads with ``HF_HUB_OFFLINE=1``: ``HF_HUB_CACHE``,
else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (read when called, so a changed
environment is honoured). A model counts as cached when its ``config.json`` and a weights
file are there (and a processor config for models loaded with a processor); a
local folder counts when it holds the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from roadparse.models import looks_like_path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""Any one of these is the model's weights."""

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Either holds the image processor's settings (``processor_config.json``: as transformers 5 saves a processor)."""


@dataclass(frozen=True)
class CachedModel:
    """Where a model stands in the local cache."""

    model: str
    """the Hugging Face id or local path"""
    missing: tuple[str, ...]
    """files not found (empty: cached)"""
    folder: Path | None
    """the snapshot (or local) folder holding ``config.json``; None when it is not there"""

    @property
    def cached(self) -> bool:
        """True when every file the loaders need is there."""
        return not self.missing


def hub_cache_dir() -> Path:
    """Returns the Hugging Face hub cache folder from the environment as it is now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _needed(processor: bool) -> list[tuple[str, ...]]:
    return [("config.json",), WEIGHT_FILES, *([PROCESSOR_FILES] if processor else [])]


def find_model(model: str, *, processor: bool = False, cache_dir: Path | None = None) -> CachedModel:
    """Returns whether ``model`` (hub id or local folder) has its config, weights (and processor config) locally."""
    if looks_like_path(model):
        local = Path(model).expanduser()
        absent = tuple(" or ".join(names) for names in _needed(processor) if not any((local / n).is_file() for n in names))
        return CachedModel(model, absent, local if (local / "config.json").is_file() else None)
    from huggingface_hub import try_to_load_from_cache

    root = cache_dir or hub_cache_dir()
    missing: list[str] = []
    folder: Path | None = None
    for names in _needed(processor):
        try:
            found = [try_to_load_from_cache(model, name, cache_dir=str(root)) for name in names]
        except ValueError:  # not a valid hub id (HFValidationError)
            return CachedModel(model, ("a valid Hugging Face id or an existing folder",), None)
        paths = [Path(path) for path in found if isinstance(path, str)]
        if not paths:
            missing.append(" or ".join(names))
        elif names == ("config.json",):
            folder = paths[0].parent
    return CachedModel(model, tuple(missing), folder)
