"""Errors of the machine, not of an item: a full disk, a quota, a read-only mount, a failing device.

A frame that cannot be decoded is a bad item: recorded as failed, and the stage goes on. A
disk that is full fails every item after it the same way, so these errors stop the stage
instead (:class:`StorageError`), with the space needed and free where that can be told; the
items finished before stay journalled, and the same command resumes once space is made.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "the device reported an input/output error",
}
"""errno -> what it means for a run: none of these is the fault of the item being processed."""


class StorageError(ValueError):
    """The work directory's storage failed (full, over quota, read-only, I/O error); the message says where and what to do."""


def is_environment_error(exc: BaseException) -> bool:
    """True when ``exc`` (or the OSError it was raised from) is a full disk, quota, read-only file system or I/O error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _errno_of(exc: BaseException) -> int | None:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return current.errno
        current = current.__cause__ or current.__context__
    return None


def _filename_of(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return None


def free_bytes(path: str | Path) -> int | None:
    """Returns the bytes free to this user on the file system of ``path`` (its deepest existing folder), or None."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def folder_bytes(folder: str | Path) -> int:
    """Returns the total size of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _size(n: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.0f} KB"


def storage_message(exc: BaseException, where: str | Path, *, done: int = 0, left: int = 0, written: int = 0) -> str:
    """Returns one line for a storage error while writing ``where``: the cause, the path, free space,
    an estimate of the space still needed (from ``written`` bytes for ``done`` items, ``left`` to go), the fix.
    """
    code = _errno_of(exc)
    what = ENVIRONMENT_ERRNOS.get(code, "storage error") if code is not None else "storage error"
    path = _filename_of(exc) or str(where)
    parts = [f"{where}: {what} ({os.strerror(code) if code else exc}) writing {path}"]
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(where)
        space = f"{_size(free)} free" if free is not None else "free space unknown"
        if done and left:
            need = written / done * left
            space += f"; the {done} finished item(s) took {_size(written)}, the {left} left need about {_size(need)} more"
        parts.append(space)
        parts.append("make space (or move WORKDIR to a larger disk), then run the same command again: finished items are kept")
    elif code == errno.EROFS:
        parts.append("choose a WORKDIR on a writable file system, or remount it read-write")
    elif code == errno.EIO:
        parts.append("check the disk (dmesg, smartctl); the finished items are kept, run the same command again once it is sound")
    return "; ".join(parts)
