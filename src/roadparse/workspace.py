"""On-disk layout of a run: one folder per stage, per-item journals, atomic manifests.

A stage run is identified by a fingerprint of its settings and of its inputs (the
fingerprints of the upstream stages' manifests). Finished items are journalled one
file each, so an interrupted stage resumes without redoing them; the manifest is
written last and atomically, so a stage with a manifest is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

from pydantic import BaseModel

from roadparse.locking import WorkdirLock, holds
from roadparse.storage import ENVIRONMENT_ERRNOS, StorageError, storage_message
from roadparse.summaries import StageSummary

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain")
"""Pipeline stages in order; each reads the artifacts of the ones before it."""

MANIFEST = "manifest.json"
_JOURNAL = ".items"
_UMASK = os.umask(0)
os.umask(_UMASK)
_FAILED = ".failed"
_WRITER = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
"""This host, in the temporary names of atomic writes (with the writer's process id)."""
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``.

    Nothing is ever left under the final name half-written: on an exception the
    temporary file is removed and ``path`` keeps its previous content (if any).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; final files get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temporaries(folder: str | Path, *, recursive: bool = True) -> int:
    """Removes the temporary files of atomic writes whose writer died (SIGKILL, power loss); returns how many.

    Only names made by :func:`atomic_output` on this host are considered, and only those
    of processes that no longer run, so a concurrent writer keeps its file.
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match and match["host"] == _WRITER and not _alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any) -> None:
    """Writes ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def fingerprint(payload: Any) -> str:
    """Returns a short stable hash of any JSON-serialisable payload."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_sha() -> str | None:
    """Returns the git commit of the roadparse source tree, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


ENVIRONMENT_PACKAGES = (
    "roadparse", "numpy", "scipy", "scikit-learn", "torch", "torchvision", "transformers",
    "segmentation-models-pytorch", "opencv-python-headless", "opencv-python", "scikit-image", "pillow", "ray",
)
"""Packages whose versions a manifest records (those installed)."""

BLAS_MODULES = ("numpy", "scipy.linalg", "sklearn.cluster", "cv2")
"""Modules :func:`environment` imports before listing the BLAS / OpenMP pools, so two processes of one
install list the same pools in the same order, whichever stage's imports came first (each of
these wheels brings its own OpenBLAS or OpenMP); torch's appear once a stage has loaded torch."""


def environment() -> dict[str, Any]:
    """Returns what computed a stage's outputs besides its settings: Python, machine and CPU, the versions
    of the numeric packages, the BLAS libraries with their kernels and threads, and torch's threads.

    Outputs are the same bytes for the same settings, thread count and machine; another CPU or
    library build orders float sums differently, and clustering can move by points (README,
    the eighth round). The manifest records this so two runs can be compared; it is not part of
    any fingerprint, so it never makes a stage run again.
    """
    import importlib
    import platform
    import sys
    from importlib import metadata

    packages: dict[str, str] = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "packages": packages,
    }
    with contextlib.suppress(ImportError):  # threadpoolctl comes with scikit-learn; it has no type stubs
        for module in BLAS_MODULES:  # the pools of every numeric library the stages use, whatever this process imported so far
            importlib.import_module(module)
        pools = importlib.import_module("threadpoolctl").threadpool_info()
        described = [
            {key: pool.get(key) for key in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
            for pool in pools
        ]
        info["blas"] = sorted(described, key=lambda pool: json.dumps(pool, sort_keys=True))  # not in load order
    torch = sys.modules.get("torch")  # only when a stage has loaded it: importing torch here would cost seconds
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_model() -> str | None:
    """Returns the CPU model name (Linux: /proc/cpuinfo; elsewhere platform.processor()), or None."""
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id)


@dataclass(frozen=True)
class StageStatus:
    """What ``roadparse status`` shows for one stage."""

    stage: str
    state: Literal["done", "partial", "stale", "missing"]
    done: int = 0
    total: int | None = None
    failed: int = 0

    def describe(self) -> str:
        """Returns a one-line human description."""
        if self.state == "partial":
            total = "?" if self.total is None else str(self.total)
            text = f"partial ({self.done} of {total})"
        elif self.state == "done":
            text = f"done ({self.done} items)"
        else:
            text = self.state
        if self.failed:
            text += f", {self.failed} failed"
        return text


class StageManifest(TypedDict):
    """A finished stage's ``<stage>/manifest.json``, as :meth:`StageRun.finish` writes it and every
    stage's ``run()`` returns it (JSON: keys in this order)."""

    stage: str
    fingerprint: str
    """What the run is recorded under: hash of stage name, settings identity and inputs."""
    settings: Any
    """The settings that decide the outputs (execution-only fields left out)."""
    inputs: dict[str, Any]
    """Upstream stages' fingerprints (and other inputs, such as the dev labels folder)."""
    git_sha: str | None
    environment: dict[str, Any]
    """Python, CPU, package versions, BLAS kernels and threads of the run that finished the stage
    (:func:`environment`): figures can move across machines; not part of the fingerprint."""
    finished: str
    """Local time the manifest was written, ``%Y-%m-%dT%H:%M:%S%z``."""
    seconds: float
    """Wall time of the run that finished the stage (a resumed run: since it resumed)."""
    items: dict[str, dict[str, Any]]
    """Journalled record of every finished item, by item id."""
    failed: dict[str, str]
    """Error message of every failed item, by item id."""
    summary: StageSummary
    """``items`` and ``failed`` counts and the stage's own summary (its type named by ``stage``:
    read it with :func:`roadparse.artifacts.stage_summary`)."""
    worker_environments: NotRequired[list[dict[str, Any]]]
    """The distinct environments of the Ray workers that computed items of this run (absent when
    the items were computed in this process): a worker on another machine shows here."""


def _settings_identity(settings: Any) -> Any:
    """Returns what identifies a stage's settings: a section's ``identity()`` (execution-only
    settings left out), a model's JSON dump, or the value itself."""
    if hasattr(settings, "identity"):
        return settings.identity()
    if isinstance(settings, BaseModel):
        return settings.model_dump(mode="json")
    return settings


def stage_fingerprint(stage: str, settings: Any, inputs: dict[str, Any]) -> str:
    """Returns the fingerprint a run of ``stage`` with these settings and inputs is recorded under."""
    return fingerprint({"stage": stage, "settings": _settings_identity(settings), "inputs": inputs})


class StageRun:
    """One execution of a stage: a journal of finished items and, at the end, the manifest.

    Use :meth:`Workspace.begin` to create one. Typical use::

        run = workspace.begin("masks", settings.masks, inputs={"roi": roi_fp})
        if run.manifest is not None:  # complete
            return run.manifest
        for tile in tiles:
            if run.item_done(tile.id):
                continue
            ...write outputs atomically...
            run.record_item(tile.id, {"n_masks": 7})
        run.finish({"tiles": len(tiles)})
    """

    def __init__(self, workspace: Workspace, stage: str, settings: Any, inputs: dict[str, Any]):
        self.workspace = workspace
        self.stage = stage
        self.dir = workspace.stage_dir(stage)
        self.settings = _settings_identity(settings)
        self.inputs = inputs
        self.fingerprint = stage_fingerprint(stage, settings, inputs)
        self._journal = self.dir / _JOURNAL
        self._failed = self.dir / _FAILED
        self._started = time.time()
        self._writing = False
        self.worker_environments: list[dict[str, Any]] = []
        """Set by :func:`roadparse.executor.process_batches` when workers elsewhere computed items."""
        self._lock: WorkdirLock | None = None
        self.manifest: StageManifest | None = workspace.finished(stage, settings, inputs)
        if self.manifest is not None and self.manifest.get("failed") and workspace.retry_failed:
            log.info("%s: retrying %d failed item(s)", stage, len(self.manifest["failed"]))
            self.manifest = None  # finished items stay journalled; start() clears the failures
        if remove_stale_temporaries(self.dir):
            log.info("%s: removed the temporary files of an interrupted run", stage)
        stamp = self._journal / "_fingerprint"
        self._journal_stale = stamp.exists() and stamp.read_text().strip() != self.fingerprint

    @property
    def complete(self) -> bool:
        """True when the stage already finished with these settings and inputs."""
        return self.manifest is not None

    def start(self) -> None:
        """Claims the stage folder for this run: drops a stale manifest and journal, retries failed items.

        Called by the first write (``set_total``, ``record_item``, ``record_failure``,
        ``finish``), so a run that fails before producing anything leaves the folder as it
        was; a stage that writes outputs before its first journal entry calls it first.
        Models are loaded and inputs checked before it (a model id that does not load must
        not cost a finished stage its manifest).

        Raises:
            roadparse.locking.WorkdirBusy: another process writes the work directory (this process held no lock on it).
        """
        if self._writing:
            return
        if not holds(self.workspace.root):  # a library caller: hold the lock while this stage writes
            self._lock = self.workspace.lock()
        if self._journal_stale:
            shutil.rmtree(self._journal, ignore_errors=True)
            self._journal_stale = False
        manifest = self.dir / MANIFEST
        if manifest.exists():
            manifest.unlink()  # stale: settings or inputs changed
        self._journal.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._failed, ignore_errors=True)  # failed items are retried
        atomic_write_text(self._journal / "_fingerprint", self.fingerprint)
        self._writing = True

    def set_total(self, total: int) -> None:
        """Records how many items the stage will process (for ``status``)."""
        self.start()
        atomic_write_text(self._journal / "_total", str(total))

    def item_done(self, item_id: str) -> bool:
        """True when ``item_id`` was finished by this or an interrupted earlier run."""
        return not self._journal_stale and (self._journal / f"{_safe_name(item_id)}.json").exists()

    def record_item(self, item_id: str, record: dict[str, Any]) -> None:
        """Journals a finished item; call only after its outputs are written."""
        self.start()
        atomic_write_json(self._journal / f"{_safe_name(item_id)}.json", {"id": item_id, **record})

    def forget_item(self, item_id: str) -> None:
        """Un-journals ``item_id`` (its outputs turned out missing or stale), so it is done again."""
        (self._journal / f"{_safe_name(item_id)}.json").unlink(missing_ok=True)

    def record_failure(self, item_id: str, error: str) -> None:
        """Records an item that could not be processed; the run goes on without it."""
        self.start()
        atomic_write_json(self._failed / f"{_safe_name(item_id)}.json", {"id": item_id, "error": error})

    def items(self) -> dict[str, dict[str, Any]]:
        """Returns the journalled records of finished items, by item id."""
        return {} if self._journal_stale else _read_records(self._journal)

    def failures(self) -> dict[str, str]:
        """Returns the errors of failed items of this run, by item id."""
        if not self._writing:
            return {}
        return {key: value["error"] for key, value in _read_records(self._failed).items()}

    def finish(self, summary: dict[str, Any] | None = None) -> StageManifest:
        """Writes the manifest (last, atomically) and returns it."""
        self.start()
        items = self.items()
        failures = self.failures()
        manifest: StageManifest = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "inputs": self.inputs,
            "git_sha": git_sha(),
            "environment": environment(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - self._started, 3),
            "items": items,
            "failed": failures,
            "summary": cast(StageSummary, {"items": len(items), "failed": len(failures), **(summary or {})}),
        }
        if self.worker_environments:
            manifest["worker_environments"] = self.worker_environments
        atomic_write_json(self.dir / MANIFEST, manifest)
        self.manifest = manifest
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return manifest


def _read_records(folder: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return records
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        records[record["id"]] = record
    return records


class WorkspaceError(ValueError):
    """The work directory cannot be used; the message names it and the fix."""



def unwritable(root: Path, exc: OSError) -> WorkspaceError | StorageError:
    """Returns the error for a work directory that cannot be created or written, naming the fix
    (a full disk, a quota, a read-only mount or an I/O error: a :class:`StorageError` saying so)."""
    if exc.errno in ENVIRONMENT_ERRNOS:
        return StorageError(storage_message(exc, root))
    blocking = Path(exc.filename) if exc.filename else root
    while not blocking.is_dir() and blocking != blocking.parent:
        blocking = blocking.parent  # the deepest existing folder is the one to fix
    return WorkspaceError(
        f"{root}: cannot write the work directory ({exc.strerror}); choose a WORKDIR you can write to, "
        f"or make {blocking} writable (e.g. chmod u+w {blocking})"
    )


class Workspace:
    """A run directory: ``ROOT/<stage>/`` per stage, each with its manifest."""

    def __init__(self, root: str | Path, *, retry_failed: bool = False):
        self.root = Path(root)
        self.retry_failed = retry_failed
        """When True, a finished stage whose manifest lists failed items runs again for those
        items (``--retry-failed``); its finished items are kept."""
        self._created: list[Path] = []
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"{self.root}: work dir exists and is not a directory; give a folder as WORKDIR")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unwritable(self.root, exc) from None

    def lock(self, *, wait: bool = False, command: str | None = None) -> WorkdirLock:
        """Returns a hold on this work directory's writer lock (a context manager; see :mod:`roadparse.locking`).

        Raises:
            roadparse.locking.WorkdirBusy: another process holds it and ``wait`` is False (the message names it).
            WorkspaceError: the lock file cannot be created (the work directory is not writable).
        """
        try:
            return WorkdirLock(self.root, wait=wait, command=command)
        except OSError as exc:
            raise unwritable(self.root, exc) from None

    def stage_dir(self, stage: str) -> Path:
        """Returns (and creates) the folder of ``stage``."""
        path = self.root / stage
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            self._created.append(path)
        return path

    def remove_empty_created(self) -> None:
        """Removes the stage folders this object created that are still empty (after a failed command)."""
        for path in reversed(self._created):
            with contextlib.suppress(OSError):  # not empty: it holds outputs now
                path.rmdir()
        self._created.clear()

    def read_manifest(self, stage: str) -> StageManifest | None:
        """Returns the manifest of a finished stage, or None."""
        path = self.root / stage / MANIFEST
        if not path.exists():
            return None
        manifest: StageManifest = json.loads(path.read_text())
        return manifest

    def require_manifest(self, stage: str) -> StageManifest:
        """Returns the manifest of ``stage``, or raises naming the command to run first."""
        manifest = self.read_manifest(stage)
        if manifest is None:
            raise ValueError(
                f"{self.root}: stage '{stage}' has not finished; run `roadparse {stage}` first"
            )
        return manifest

    def finished(self, stage: str, settings: Any, inputs: dict[str, Any] | None = None) -> StageManifest | None:
        """Returns the manifest of ``stage`` when it finished with these settings and inputs (what
        :meth:`begin` would then skip with), else None; changes nothing on disk."""
        existing = self.read_manifest(stage)
        if existing and existing.get("fingerprint") == stage_fingerprint(stage, settings, inputs or {}):
            return existing
        return None

    def begin(self, stage: str, settings: Any, inputs: dict[str, Any] | None = None) -> StageRun:
        """Starts (or resumes, or recognises as complete) a run of ``stage``."""
        return StageRun(self, stage, settings, inputs or {})

    def read_settings(self) -> str | None:
        """Returns the text of ``ROOT/settings.yaml``, or None when there is none."""
        path = self.root / "settings.yaml"
        return path.read_text() if path.is_file() else None

    def restore_settings(self, text: str | None) -> None:
        """Puts back settings read with :meth:`read_settings` (None: no settings file)."""
        path = self.root / "settings.yaml"
        if text is not None:
            atomic_write_text(path, text)
        elif path.exists():
            path.unlink()

    def write_settings(self, text: str) -> None:
        """Records the resolved settings of the latest run in ``ROOT/settings.yaml``.

        Raises:
            WorkspaceError: the work directory cannot be written (named, with the fix).
        """
        try:
            atomic_write_text(self.root / "settings.yaml", text)
        except OSError as exc:
            raise unwritable(self.root, exc) from None

    def status(self) -> list[StageStatus]:
        """Returns the state of every stage: done / partial (n of m) / stale / missing."""
        statuses = []
        fingerprints: dict[str, str] = {}
        for stage in STAGES:
            manifest = self.read_manifest(stage)
            if manifest is not None:
                fingerprints[stage] = manifest["fingerprint"]
                stale = any(
                    stage_name in fingerprints and value != fingerprints[stage_name]
                    for stage_name, value in manifest.get("inputs", {}).items()
                )
                statuses.append(
                    StageStatus(
                        stage,
                        "stale" if stale else "done",
                        done=len(manifest.get("items", {})),
                        failed=len(manifest.get("failed", {})),
                    )
                )
                continue
            journal = self.root / stage / _JOURNAL
            if journal.is_dir():
                total_file = journal / "_total"
                total = int(total_file.read_text()) if total_file.exists() else None
                done = len(list(journal.glob("*.json")))
                failed = len(list((self.root / stage / _FAILED).glob("*.json")))
                statuses.append(StageStatus(stage, "partial", done=done, total=total, failed=failed))
            else:
                statuses.append(StageStatus(stage, "missing"))
        return statuses
