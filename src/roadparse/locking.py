"""One writer per work directory: an advisory ``flock`` on ``WORKDIR/.lock``.

Every command that writes a work directory holds the lock for as long as it runs; a second
writer fails at once with one line naming the holder (its PID, host and command), or queues
behind it with ``--wait``. The operating system drops the lock when the holding process
ends, however it ends (SIGKILL, power loss on a local disk), so a killed run never leaves a
stale lock; the file itself stays, and only records who holds it now.

Holds are counted per process: a command that holds the lock can run stages that take it
again. Readers (``roadparse status``, the review page's reading) take no lock.

On NFS, ``flock`` is carried by the server's byte-range locks (Linux clients since 2.6.12):
it works where the server supports locking (NFSv4, or NFSv3 with ``lockd``), and a mount
with ``nolock`` makes every lock local to one client (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
"""The lock file in a work directory (kept between runs; its content names the current holder)."""


class WorkdirBusy(ValueError):
    """Another process writes the work directory; the message names it and what to do."""

    def __init__(self, root: Path, holder: str):
        super().__init__(
            f"{root}: another roadparse command is writing this work directory: {holder}; "
            "wait for it to end, or pass --wait to start when it does"
        )
        self.root = root
        self.holder = holder
        """Who holds the lock, in words (``PID 123 on host (roadparse run config.yaml), since ...``)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a work directory's lock, as the holder wrote it into the lock file."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        """Returns ``PID 123 on host (roadparse masks work), since 2025-01-01T12:00:00+0000``."""
        return f"PID {self.pid} on {self.host} ({self.command}), since {self.since}"


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[str, _Held] = {}
_REGISTRY = threading.Lock()


def _key(root: Path) -> str:
    return os.path.realpath(root)


def _command_line() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def read_holder(root: str | Path) -> Holder | None:
    """Returns the holder recorded in ``root/.lock`` (the last one when nobody holds it now), or None."""
    try:
        data = json.loads((Path(root) / LOCK_NAME).read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holds(root: str | Path) -> bool:
    """True when this process holds the lock of the work directory ``root``."""
    with _REGISTRY:
        return _key(Path(root)) in _HELD


def _holder_text(root: Path) -> str:
    holder = read_holder(root)
    return holder.describe() if holder else "another process (it has not written its name yet)"


def _open(root: Path) -> int:
    return os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


def _write_holder(fd: int, command: str | None) -> None:
    record = {
        "pid": os.getpid(), "host": socket.gethostname(), "command": command or _command_line(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    data = (json.dumps(record) + "\n").encode()
    try:
        os.ftruncate(fd, 0)  # written in place: replacing the file would hand waiters another inode's lock
        os.pwrite(fd, data, 0)
    except OSError as exc:  # a full disk: the lock holds all the same, only its holder goes unnamed
        log.debug("cannot record the lock's holder: %s", exc)


def _unsupported(exc: OSError) -> bool:
    """True for the errors of a file system without locks (some FUSE and network file systems)."""
    return exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _acquire(root: Path, wait: bool, command: str | None) -> None:
    key = _key(root)
    with _REGISTRY:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
            return
        fd = _open(root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise WorkdirBusy(root, _holder_text(root)) from None
        except OSError as exc:
            if not _unsupported(exc):
                os.close(fd)
                raise
            log.warning("%s: the file system has no locks (%s); going on without one: start no second writer here",
                        root, exc.strerror)
            _HELD[key] = _Held(fd, 1)
            return
        else:
            _write_holder(fd, command)
            _HELD[key] = _Held(fd, 1)
            return
    log.warning("%s: another roadparse command is writing this work directory: %s; waiting", root, _holder_text(root))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # outside the registry lock: this process's other holds go on meanwhile
    except BaseException:
        os.close(fd)
        raise
    with _REGISTRY:
        _write_holder(fd, command)
        _HELD[key] = _Held(fd, 1)


def _release(key: str) -> None:
    with _REGISTRY:
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)


class WorkdirLock:
    """A hold on the lock of one work directory; released by :meth:`release`, on leaving a
    ``with`` block, when the object is garbage-collected, or by the OS when the process ends.

    Raises:
        WorkdirBusy: another process holds the lock and ``wait`` is False.
        OSError: the lock file cannot be created (a read-only or full work directory).
    """

    def __init__(self, root: str | Path, *, wait: bool = False, command: str | None = None):
        self.root = Path(root)
        _acquire(self.root, wait, command)
        self._finalizer = weakref.finalize(self, _release, _key(self.root))

    @property
    def held(self) -> bool:
        """True until released."""
        return self._finalizer.alive

    def release(self) -> None:
        """Gives this hold back (the lock itself is freed when the process's last hold is)."""
        self._finalizer()

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.release()


