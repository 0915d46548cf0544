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
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

STAGES: tuple[str, ...] = ("roi", "masks", "embed", "cluster", "pseudolabel", "selftrain")
"""Pipeline stages in order; each reads the artifacts of the ones before it."""

MANIFEST = "manifest.json"
_JOURNAL = ".items"
_UMASK = os.umask(0)
os.umask(_UMASK)
_FAILED = ".failed"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path``.

    Nothing is ever left under the final name half-written: on an exception the
    temporary file is removed and ``path`` keeps its previous content (if any).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; final files get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
        if run.complete:
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
        self.manifest: dict[str, Any] | None = workspace.finished(stage, settings, inputs)
        if self.manifest is None:
            self._prepare_journal()

    @property
    def complete(self) -> bool:
        """True when the stage already finished with these settings and inputs."""
        return self.manifest is not None

    def _prepare_journal(self) -> None:
        stamp = self._journal / "_fingerprint"
        if stamp.exists() and stamp.read_text().strip() != self.fingerprint:
            shutil.rmtree(self._journal, ignore_errors=True)
            shutil.rmtree(self._failed, ignore_errors=True)
        manifest = self.dir / MANIFEST
        if manifest.exists():
            manifest.unlink()  # stale: settings or inputs changed
        self._journal.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._failed, ignore_errors=True)  # failed items are retried
        atomic_write_text(stamp, self.fingerprint)

    def set_total(self, total: int) -> None:
        """Records how many items the stage will process (for ``status``)."""
        atomic_write_text(self._journal / "_total", str(total))

    def item_done(self, item_id: str) -> bool:
        """True when ``item_id`` was finished by this or an interrupted earlier run."""
        return (self._journal / f"{_safe_name(item_id)}.json").exists()

    def record_item(self, item_id: str, record: dict[str, Any]) -> None:
        """Journals a finished item; call only after its outputs are written."""
        atomic_write_json(self._journal / f"{_safe_name(item_id)}.json", {"id": item_id, **record})

    def forget_item(self, item_id: str) -> None:
        """Un-journals ``item_id`` (its outputs turned out missing or stale), so it is done again."""
        (self._journal / f"{_safe_name(item_id)}.json").unlink(missing_ok=True)

    def record_failure(self, item_id: str, error: str) -> None:
        """Records an item that could not be processed; the run goes on without it."""
        atomic_write_json(self._failed / f"{_safe_name(item_id)}.json", {"id": item_id, "error": error})

    def items(self) -> dict[str, dict[str, Any]]:
        """Returns the journalled records of finished items, by item id."""
        return _read_records(self._journal)

    def failures(self) -> dict[str, str]:
        """Returns the errors of failed items, by item id."""
        return {key: value["error"] for key, value in _read_records(self._failed).items()}

    def finish(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Writes the manifest (last, atomically) and returns it."""
        items = self.items()
        failures = self.failures()
        manifest = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "inputs": self.inputs,
            "git_sha": git_sha(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - self._started, 3),
            "items": items,
            "failed": failures,
            "summary": {"items": len(items), "failed": len(failures), **(summary or {})},
        }
        atomic_write_json(self.dir / MANIFEST, manifest)
        self.manifest = manifest
        return manifest


def _read_records(folder: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return records
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        records[record["id"]] = record
    return records


class Workspace:
    """A run directory: ``ROOT/<stage>/`` per stage, each with its manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"{self.root}: work dir exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)

    def stage_dir(self, stage: str) -> Path:
        """Returns (and creates) the folder of ``stage``."""
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        """Returns the manifest of a finished stage, or None."""
        path = self.root / stage / MANIFEST
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def require_manifest(self, stage: str) -> dict[str, Any]:
        """Returns the manifest of ``stage``, or raises naming the command to run first."""
        manifest = self.read_manifest(stage)
        if manifest is None:
            raise ValueError(
                f"{self.root}: stage '{stage}' has not finished; run `roadparse {stage}` first"
            )
        return manifest

    def finished(self, stage: str, settings: Any, inputs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Returns the manifest of ``stage`` when it finished with these settings and inputs (what
        :meth:`begin` would then skip with), else None; changes nothing on disk."""
        existing = self.read_manifest(stage)
        if existing and existing.get("fingerprint") == stage_fingerprint(stage, settings, inputs or {}):
            return existing
        return None

    def begin(self, stage: str, settings: Any, inputs: dict[str, Any] | None = None) -> StageRun:
        """Starts (or resumes, or recognises as complete) a run of ``stage``."""
        return StageRun(self, stage, settings, inputs or {})

    def write_settings(self, text: str) -> None:
        """Records the resolved settings of the latest run in ``ROOT/settings.yaml``."""
        atomic_write_text(self.root / "settings.yaml", text)

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
