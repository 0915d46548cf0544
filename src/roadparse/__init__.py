"""roadparse: unsupervised road parsing of drone imagery (the COMRP method).

The Python API, loaded on first use so that ``import roadparse`` stays light:

- :func:`init` writes a settings file for a folder of frames (``roadparse init``);
- :class:`Run` runs the stages on one work directory, resuming (``roadparse run``);
- :func:`load_model` loads a trained model, whose ``predict`` labels an image;
- :func:`export` writes GIS layers, measurements and COCO annotations (``roadparse export``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Run": "roadparse.api",
    "load_model": "roadparse.api",
    "export": "roadparse.api",
    "init": "roadparse.initialise",
}
"""Public name -> the module that defines it, imported on first access."""

__all__ = ["Run", "__version__", "export", "init", "load_model"]

if TYPE_CHECKING:
    from roadparse.api import Run, export, load_model
    from roadparse.initialise import init


def __getattr__(name: str) -> Any:
    """Returns a public API name, importing its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'roadparse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
