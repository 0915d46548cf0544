"""The page's choices as a merge map and back: validation, YAML text, atomic save with a backup.

The page sends ``{"clusters": {"0": "road", "5": {"split": 2, "seed": 0, "sizes": [..],
"parts": [..]}}}``, the same shape as the merge-map YAML (docs/artifacts.md).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from roadparse.io.labels import ClassSet
from roadparse.merge import class_table, format_merge_map, parse_merge_map
from roadparse.merge_split import Split
from roadparse.workspace import atomic_output, atomic_write_text

_SAVE_LOCK = threading.Lock()


def parse_choices(payload: Any, n_clusters: int, classes: ClassSet) -> dict[int, str | Split]:
    """Returns the merge map of the page's choices, complete and valid.

    Raises:
        ValueError: malformed payload, unknown class names, unknown or unmapped clusters.
    """
    merge_map = parse_merge_map(payload, "choices")
    class_table(merge_map, n_clusters, classes)  # raises naming what is missing or unknown
    return merge_map


def choices_payload(merge_map: Mapping[int, str | Split]) -> dict[str, Any]:
    """Returns the page's JSON form of a merge map (``{"clusters": {"0": ...}}``)."""
    return {
        "clusters": {
            str(c): (v.to_yaml_value() if isinstance(v, Split) else v)
            for c, v in sorted(merge_map.items())
        }
    }


def merge_map_text(
    merge_map: Mapping[int, str | Split], classes: ClassSet, sizes: Mapping[int, int]
) -> str:
    """Returns the merge-map YAML of ``merge_map`` with each cluster's size as a comment."""
    entries = [(cid, value, f"{sizes.get(cid, 0)} masks") for cid, value in sorted(merge_map.items())]
    header = ["Merge map written by `roadparse review` (cluster -> class, 'discard', or a split into parts)."]
    return format_merge_map(entries, classes.names, header)


def save_merge_map(path: Path, text: str) -> Path | None:
    """Writes ``text`` to ``path`` atomically, first copying the previous file to ``<name>.bak``.

    Concurrent saves are serialised (last write wins); readers never see a partial file.
    Returns the backup path, or None when there was no previous file.
    """
    backup = path.with_name(path.name + ".bak")
    with _SAVE_LOCK:
        had_previous = path.exists()
        if had_previous:
            with atomic_output(backup) as tmp:
                shutil.copyfile(path, tmp)
        atomic_write_text(path, text)
    return backup if had_previous else None
