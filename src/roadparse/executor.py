"""How data-parallel stages (roi, masks, embed, predict) run their items.

A stage describes its work as a :class:`Task`: a small picklable object whose ``load()``
runs once per worker (models are loaded there) and returns the function applied to each
batch of items. An :class:`Executor` decides where that happens:
:class:`InProcessExecutor` runs every batch here, in order; :class:`RayExecutor` runs them
on long-lived Ray actors (one per GPU or per N CPUs), each loading its model once.

Either way the worker writes an item's outputs atomically into the work directory and
returns the item's record; the driver journals it (:func:`process_batches`), so a killed
run resumes exactly as in-process.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from roadparse.config import RunSettings
from roadparse.storage import StorageError, folder_bytes, is_environment_error, storage_message
from roadparse.workspace import StageRun, environment

log = logging.getLogger(__name__)

BatchFn = Callable[[list[Any]], list[Any]]
"""Applied to a batch of items; returns one record (or Exception for a failed item) per item, in order."""

ITEM_ERRORS = (ValueError, OSError, RuntimeError, KeyError)
"""Exceptions that mean a bad item (unreadable file, bad data), not a bug in the stage: recorded, the run goes on.
Except a full disk, a quota, a read-only file system or an I/O error (:mod:`roadparse.storage`): those stop the
stage with a :class:`~roadparse.storage.StorageError`, the items finished before kept."""


@runtime_checkable
class Task(Protocol):
    """A stage's per-batch work, shipped to every worker: ``load()`` once, then the returned function per batch."""

    def load(self) -> BatchFn: ...


@dataclass(frozen=True)
class Ready:
    """A :class:`Task` around a function that needs no loading (tests, in-process helpers)."""

    fn: BatchFn

    def load(self) -> BatchFn:
        """Returns the function itself."""
        return self.fn


class Executor(Protocol):
    """Runs a task over batches; yields (batch, results or the exception that failed the whole batch)."""

    def prepare(self, task: Task, batches: int) -> None: ...

    def map(self, task: Task, batches: Iterable[list[Any]]) -> Iterator[tuple[list[Any], list[Any] | Exception]]: ...

    def environments(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Runs every batch in this process, one after the other (the default, ``run.executor: local``)."""

    def __init__(self) -> None:
        self._loaded: tuple[Task, BatchFn] | None = None

    def prepare(self, task: Task, batches: int) -> None:
        """Loads ``task`` (its models) now, so that one that cannot load fails before the stage writes anything."""
        if self._loaded is None or self._loaded[0] is not task:
            self._loaded = (task, task.load())

    def map(self, task: Task, batches: Iterable[list[Any]]) -> Iterator[tuple[list[Any], list[Any] | Exception]]:
        """Loads ``task`` once (kept for later calls with the same task) and applies it to each batch."""
        self.prepare(task, 0)
        assert self._loaded is not None
        fn = self._loaded[1]
        for batch in batches:
            try:
                yield batch, fn(batch)
            except ITEM_ERRORS as exc:  # a bad item, not a bug in the stage
                yield batch, exc

    def environments(self) -> list[dict[str, Any]]:
        """Returns [] : the items were computed in this process, whose environment the manifest records."""
        return []

    def close(self) -> None:
        """Drops the loaded task (and its models)."""
        self._loaded = None


def make_executor(settings: RunSettings) -> Executor:
    """Returns the executor ``run.executor`` names (``local`` or ``ray``), configured from ``settings``."""
    if settings.executor == "ray":
        return RayExecutor(
            address=settings.ray_address,
            workers=settings.ray_workers,
            cpus_per_worker=settings.ray_cpus_per_worker,
            gpus_per_worker=settings.ray_gpus_per_worker,
        )
    return InProcessExecutor()


def process_items(
    run: StageRun,
    items: dict[str, Any],
    fn: Callable[[Any], dict[str, Any]] | Task,
    *,
    desc: str,
    unit: str,
    executor: Executor | None = None,
) -> tuple[int, int]:
    """Runs ``fn`` on every item not yet journalled in ``run``; returns (done now, failed now).

    ``items`` maps item id -> item. ``fn`` (or the function a :class:`Task`'s ``load()``
    returns) writes the item's outputs (atomically) and returns the record to journal. An
    item raising ValueError/OSError/RuntimeError/KeyError is recorded as failed with its
    message and the run goes on.
    """
    task = _PerItem(fn if isinstance(fn, Task) else Ready(fn))  # type: ignore[arg-type]
    return process_batches(run, items, task, batch_size=1, desc=desc, unit=unit, executor=executor)


@dataclass(frozen=True)
class _PerItem:
    inner: Task

    def load(self) -> BatchFn:
        per_item = self.inner.load()
        return lambda batch: [per_item(item) for item in batch]


def group_by_weight(keys: list[str], weights: dict[str, int], target: int) -> list[list[str]]:
    """Returns ``keys`` cut, in order, into consecutive groups whose weights add up to at least ``target``
    (the last group may weigh less); a key of weight 0 joins the current group."""
    groups: list[list[str]] = []
    current: list[str] = []
    total = 0
    for key in keys:
        current.append(key)
        total += max(0, weights.get(key, 1))
        if total >= target:
            groups.append(current)
            current, total = [], 0
    if current:
        groups.append(current)
    return groups


def process_batches(
    run: StageRun,
    items: dict[str, Any],
    fn: BatchFn | Task,
    *,
    batch_size: int,
    desc: str,
    unit: str,
    executor: Executor | None = None,
    weights: dict[str, int] | None = None,
) -> tuple[int, int]:
    """As :func:`process_items`, with the function called on batches of items at once.

    Batches hold ``batch_size`` items, or, with ``weights`` (item id -> cost, e.g. its number
    of masks), consecutive items whose weights add up to ``batch_size``. The function returns
    one record per item, in order; an Exception in place of a record marks that item failed.
    When a whole batch of several items fails, its items are retried one at a time (after the
    other batches), so a bad item is recorded on its own and never takes its neighbours with it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    task = fn if isinstance(fn, Task) else Ready(fn)
    todo = [key for key in items if not run.item_done(key)]
    if len(todo) < len(items):
        log.info("%s: resuming, %d of %d %s already done", run.stage, len(items) - len(todo), len(items), unit)
    if weights is None:
        groups = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    else:
        groups = group_by_weight(todo, weights, batch_size)
    owned = executor is None
    executor = executor or InProcessExecutor()
    done = failed = 0
    try:
        if groups:
            executor.prepare(task, len(groups))  # models load before the stage claims its folder (a bad model id changes nothing)
        run.set_total(len(items))
        with tqdm(total=len(todo), desc=desc, unit=unit, dynamic_ncols=True) as bar:
            retry: list[list[str]] = []

            def journal(keys: list[str], results: list[Any]) -> None:
                nonlocal done, failed
                for key, result in zip(keys, results, strict=True):
                    if isinstance(result, Exception) and is_environment_error(result):
                        raise result  # a full disk fails every item after it: stop (below), keep what is journalled
                    if isinstance(result, Exception):
                        log.warning("%s: %s failed: %s", run.stage, key, result)
                        run.record_failure(key, f"{type(result).__name__}: {result}" if not str(result) else str(result))
                        failed += 1
                    else:
                        run.record_item(key, result)
                        done += 1
                    bar.update(1)

            for keys, results in _map_keys(executor, task, items, groups):
                if isinstance(results, Exception) and len(keys) > 1 and not is_environment_error(results):
                    log.info("%s: a batch of %d failed (%s); retrying its %s one at a time", run.stage, len(keys), results, unit)
                    retry += [[key] for key in keys]
                    continue
                journal(keys, [results] if isinstance(results, Exception) else _checked(run.stage, results, len(keys)))
            for keys, results in _map_keys(executor, task, items, retry):
                journal(keys, [results] if isinstance(results, Exception) else _checked(run.stage, results, len(keys)))
        run.worker_environments = executor.environments()
    except Exception as exc:
        if not is_environment_error(exc):
            raise
        raise stopped_by_storage(run, exc, len(items)) from exc
    finally:
        if owned:
            executor.close()
    return done, failed


def stopped_by_storage(run: StageRun, exc: BaseException, total: int) -> StorageError:
    """Returns the error that stops ``run`` on a full disk, quota, read-only file system or I/O error:
    where, the free space and about how much more the items left need (from what the finished ones took)."""
    finished = len(run.items())
    written = folder_bytes(run.dir)
    return StorageError(storage_message(exc, run.dir, done=finished, left=total - finished, written=written))


def _map_keys(
    executor: Executor, task: Task, items: dict[str, Any], groups: list[list[str]]
) -> Iterator[tuple[list[str], list[Any] | Exception]]:
    if not groups:
        return
    batches = [[items[key] for key in keys] for keys in groups]
    keys_of = {id(batch): keys for batch, keys in zip(batches, groups, strict=True)}
    for batch, results in executor.map(task, batches):
        yield keys_of[id(batch)], results


def _checked(stage: str, results: list[Any], expected: int) -> list[Any]:
    if len(results) != expected:
        raise RuntimeError(f"{stage}: {len(results)} results for a batch of {expected}")
    return results


# --- Ray --------------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "run.executor=ray needs Ray: pip install 'roadparse[distributed]' (or set run.executor=local)"
        ) from None
    return ray


class _Worker:
    """The body of a Ray actor: loads the task once, then runs batches."""

    def __init__(self, task: Task, threads: int | None):
        self.task = task
        self.fn: BatchFn | None = None
        if threads:
            import torch

            torch.set_num_threads(threads)

    def setup(self) -> int:
        """Loads the task's models; returns this worker's process id."""
        if self.fn is None:
            self.fn = self.task.load()
        return os.getpid()

    def environment(self) -> dict[str, Any]:
        """Returns this worker's environment (:func:`roadparse.workspace.environment`), its models loaded."""
        self.setup()
        return environment()

    def run(self, batch: list[Any]) -> list[Any] | Exception:
        """Returns the batch's records, or the item error that failed the whole batch."""
        self.setup()
        assert self.fn is not None
        try:
            return self.fn(batch)
        except ITEM_ERRORS as exc:
            return exc


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory) while processing an item, more often than allowed."""


class RayExecutor:
    """Runs batches on Ray actors: one long-lived actor per ``gpus_per_worker`` GPUs (or per
    ``cpus_per_worker`` CPUs), each loading the task's models once.

    Ray is started on this machine (``address`` None, or ``"local"``) unless it is already
    running in this process; ``address="auto"`` or ``"ray://host:10001"`` joins an existing
    cluster. Each actor keeps two batches queued so it never waits for the driver. A batch
    whose actor dies is given to a fresh actor, up to ``retries`` times; then (one item at a
    time, for batches of several) its items are reported failed with :class:`WorkerLost`.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        retries: int = 2,
        queue_per_worker: int = 2,
    ):
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.retries = retries
        self.queue_per_worker = max(1, queue_per_worker)
        self.restarts = 0
        """Actors replaced after dying, since this executor was made."""
        self._actors: list[Any] = []
        self._task: Task | None = None
        self._environment_refs: list[Any] = []
        self._setup_refs: list[Any] = []
        self._environments: dict[str, dict[str, Any]] = {}

    def _ray(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            address = None if self.address in (None, "local") else self.address
            log.info("ray: %s", f"connecting to {address}" if address else "starting a local Ray on this machine")
            ray.init(address=address, include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING)
        return ray

    def worker_count(self) -> int:
        """Returns how many actors this executor runs: ``workers``, else as many as the cluster's GPUs or CPUs hold."""
        if self.workers:
            return self.workers
        resources = self._ray().cluster_resources()
        if self.gpus_per_worker > 0:
            return max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))

    def _new_actor(self, task: Task) -> Any:
        ray = self._ray()
        remote = ray.remote(_Worker).options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker or None)
        threads = max(1, int(self.cpus_per_worker)) if not self.gpus_per_worker else None
        actor = remote.remote(task, threads)
        self._setup_refs.append(actor.setup.remote())  # start loading now; calls on an actor run in order
        self._environment_refs.append(actor.environment.remote())
        return actor

    def _start(self, task: Task, wanted: int) -> None:
        if self._task is task and self._actors:
            return
        self.close()
        self._task = task
        self._environment_refs, self._environments = [], {}  # another task's workers computed none of these items
        self._setup_refs = []
        self._actors = [self._new_actor(task) for _ in range(wanted)]

    def prepare(self, task: Task, batches: int) -> None:
        """Starts the actors for ``batches`` batches and waits until each has loaded the task's models;
        a model that cannot load raises here, before the stage writes anything (a dead actor is left to :meth:`map`)."""
        ray = self._ray()
        self._start(task, min(self.worker_count(), max(1, batches)))
        refs, self._setup_refs = self._setup_refs, []
        for ref in refs:
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
            except ray.exceptions.RayActorError:
                continue

    def map(self, task: Task, batches: Iterable[list[Any]]) -> Iterator[tuple[list[Any], list[Any] | Exception]]:
        """Yields (batch, results) as batches finish, in any order."""
        ray = self._ray()
        queue: deque[tuple[list[Any], int]] = deque((batch, 0) for batch in batches)
        if not queue:
            return
        self._start(task, min(self.worker_count(), len(queue)))
        pending: dict[Any, tuple[int, Any, list[Any], int]] = {}  # ref -> (actor slot, actor, batch, attempts)
        load: list[int] = [0] * len(self._actors)

        def submit() -> None:
            for slot in range(len(self._actors)):
                while queue and load[slot] < self.queue_per_worker:
                    batch, attempts = queue.popleft()
                    actor = self._actors[slot]
                    pending[actor.run.remote(batch)] = (slot, actor, batch, attempts)
                    load[slot] += 1

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            slot, actor, batch, attempts = pending.pop(ref)
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # a bug or a model that cannot load: stop the stage
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
            except ray.exceptions.RayActorError as exc:
                if self._actors[slot] is actor:  # its other queued batches fail the same way
                    self._replace(slot, task)
                yield from self._after_death(batch, attempts, exc, queue)
            else:
                yield batch, result
            submit()

    def environments(self) -> list[dict[str, Any]]:
        """Returns the distinct environments of the actors started so far (one that died first is left out)."""
        if self._environment_refs:
            ray = self._ray()
            for ref in self._environment_refs:
                try:
                    found = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
                    continue
                self._environments.setdefault(json.dumps(found, sort_keys=True), found)
            self._environment_refs = []
        return list(self._environments.values())

    def _replace(self, slot: int, task: Task) -> None:
        ray = self._ray()
        ray.kill(self._actors[slot], no_restart=True)
        self.restarts += 1
        log.warning("ray: worker %d died; starting a new one", slot)
        self._actors[slot] = self._new_actor(task)

    def _after_death(
        self, batch: list[Any], attempts: int, exc: Exception, queue: deque[tuple[list[Any], int]]
    ) -> Iterator[tuple[list[Any], list[Any] | Exception]]:
        if attempts < self.retries:
            queue.append((batch, attempts + 1))
        elif len(batch) > 1:
            yield batch, WorkerLost(f"a worker died {attempts + 1} times on this batch ({type(exc).__name__})")
        else:
            yield batch, [WorkerLost(f"a worker died {attempts + 1} times on this item ({type(exc).__name__})")]

    def close(self) -> None:
        """Ends this executor's actors (Ray itself keeps running for the next stage)."""
        if self._actors:
            ray = _import_ray()
            for actor in self._actors:
                ray.kill(actor, no_restart=True)
        self._actors = []
        self._task = None
