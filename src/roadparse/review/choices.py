"""The page's choices as a merge map and back: validation, YAML text, atomic save with timestamped backups.

The page sends ``{"clusters": {"0": "road", "5": {"split": 2, "seed": 0, "sizes": [..],
"parts": [..]}}}``, the same shape as the merge-map YAML (docs/artifacts.md).
"""

from __future__ import annotations

import contextlib
import glob
import shutil
import signal
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from roadparse.io.labels import ClassSet
from roadparse.merge import class_table, format_merge_map, parse_merge_map
from roadparse.merge_split import Split
from roadparse.workspace import atomic_output, atomic_write_text, remove_stale_temporaries

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


BACKUPS_KEPT = 5
"""Timestamped backups of the merge map the review page keeps (``merge_map.yaml.<time>.bak``), newest last."""


def backups(path: Path) -> list[Path]:
    """Returns the review page's backups of the merge map at ``path``, oldest first."""
    return sorted(path.parent.glob(f"{glob.escape(path.name)}.*.bak"))


def _backup_path(path: Path) -> Path:
    stamp = datetime.now()
    while True:
        candidate = path.with_name(f"{path.name}.{stamp.strftime('%Y%m%d-%H%M%S-%f')}.bak")
        if not candidate.exists():
            return candidate
        stamp += timedelta(microseconds=1)


def save_merge_map(path: Path, text: str) -> Path | None:
    """Writes ``text`` to ``path`` atomically, first copying the previous file to a timestamped backup
    (the newest :data:`BACKUPS_KEPT` are kept).

    Concurrent saves are serialised (last write wins); readers never see a partial file, and no
    temporary file outlives a save: an exception (KeyboardInterrupt, SIGTERM through
    :func:`saves_finish_on_exit`) removes it, and those of a killed save are removed by the next.
    Returns the backup path, or None when there was no previous file.
    """
    with _SAVE_LOCK:
        remove_stale_temporaries(path.parent, recursive=False)  # a save killed with SIGKILL
        backup = None
        if path.exists():
            backup = _backup_path(path)
            with atomic_output(backup) as tmp:
                shutil.copyfile(path, tmp)
            for old in backups(path)[:-BACKUPS_KEPT]:
                old.unlink(missing_ok=True)
        atomic_write_text(path, text)
    return backup


@contextlib.contextmanager
def saves_finish_on_exit() -> Iterator[None]:
    """Within: SIGTERM stops the main thread as Ctrl-C does (KeyboardInterrupt); on leaving, however, a save in
    progress on another thread is waited for, so it ends whole and removes its temporary file."""
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        with _SAVE_LOCK:  # the save in progress, if any, has finished
            pass
