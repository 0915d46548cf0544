"""Runs ``roadparse ARGS...`` and SIGKILLs itself at the N-th atomic rename (``os.replace``).

Every output of roadparse is written to a temporary name and renamed (``atomic_output``),
so the renames are the points where a kill leaves a different state on disk. The
environment says where: ``KILL_AT_REPLACE=N`` and ``KILL_WHEN=before|after`` (kill just
before or just after the N-th rename). Used by tests/test_sigkill.py.
"""

from __future__ import annotations

import os
import signal
import sys


def _install(kill_at: int, when: str) -> None:
    real_replace = os.replace
    count = 0

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        if count == kill_at and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if count == kill_at and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


if __name__ == "__main__":
    _install(int(os.environ["KILL_AT_REPLACE"]), os.environ.get("KILL_WHEN", "after"))
    from roadparse.cli import main

    main(sys.argv[1:], prog_name="roadparse")
