"""How data-parallel stages (roi, masks, embed, predict) run their items.

A stage hands a list of items and a function to an :class:`Executor`; the executor
decides where the calls run. :class:`InProcessExecutor` runs them here, in order;
a distributed backend (Ray, several GPUs) implements the same ``map``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from roadparse.workspace import StageRun

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over items and yields (item, result or exception) as each finishes."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | Exception]]: ...


class InProcessExecutor:
    """Runs every call in this process, one after the other (the default)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | Exception]]:
        for item in items:
            try:
                yield item, fn(item)
            except (ValueError, OSError, RuntimeError) as exc:  # a bad item, not a bug in the stage
                yield item, exc


def process_items(
    run: StageRun,
    items: dict[str, Any],
    fn: Callable[[Any], dict[str, Any]],
    *,
    desc: str,
    unit: str,
    executor: Executor | None = None,
) -> tuple[int, int]:
    """Runs ``fn`` on every item not yet journalled in ``run``; returns (done now, failed now).

    ``items`` maps item id -> item. ``fn`` writes the item's outputs (atomically) and
    returns the record to journal. An item raising ValueError/OSError/RuntimeError is
    recorded as failed with its message and the run goes on.
    """
    return process_batches(run, items, lambda batch: [fn(batch[0])], batch_size=1, desc=desc, unit=unit, executor=executor)


def process_batches(
    run: StageRun,
    items: dict[str, Any],
    fn: Callable[[list[Any]], list[dict[str, Any]]],
    *,
    batch_size: int,
    desc: str,
    unit: str,
    executor: Executor | None = None,
) -> tuple[int, int]:
    """As :func:`process_items`, with ``fn`` called on up to ``batch_size`` items at once.

    ``fn`` returns one record per item, in order. When a batch of several items fails,
    its items are retried one at a time, so a bad item is recorded on its own and never
    takes its neighbours with it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    run.set_total(len(items))
    todo = [(key, value) for key, value in items.items() if not run.item_done(key)]
    if len(todo) < len(items):
        log.info("%s: resuming, %d of %d %s already done", run.stage, len(items) - len(todo), len(items), unit)
    executor = executor or InProcessExecutor()
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    done = failed = 0
    results: Sequence[dict[str, Any] | Exception] | Exception  # a batch's records, or why it failed
    with tqdm(total=len(todo), desc=desc, unit=unit, dynamic_ncols=True) as bar:
        for batch, results in executor.map(lambda pairs: fn([value for _, value in pairs]), batches):
            if isinstance(results, Exception):
                if len(batch) > 1:
                    log.info("%s: a batch of %d failed (%s); retrying its %s one at a time", run.stage, len(batch), results, unit)
                    results = [result for _, result in executor.map(lambda pair: fn([pair[1]])[0], batch)]
                else:
                    results = [results]
            elif len(results) != len(batch):
                raise RuntimeError(f"{run.stage}: {len(results)} results for a batch of {len(batch)}")
            for (key, _), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    log.warning("%s: %s failed: %s", run.stage, key, result)
                    run.record_failure(key, str(result))
                    failed += 1
                else:
                    run.record_item(key, result)
                    done += 1
                bar.update(1)
    return done, failed
