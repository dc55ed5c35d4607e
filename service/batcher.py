"""Request batcher: concurrent lookups by key collected into one query."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from service import anatomy, metrics
from service.anatomy import Stage, Timings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

OVERFLOW_ACTIONS = ("fallback", "reject")


class BatcherFull(RuntimeError):
    """The batcher's pending queue is full and overflow='reject'."""


class _Lookup(Generic[K, V]):
    """One queued lookup: its key, the future its caller awaits, and how its batch went."""

    __slots__ = ("key", "future", "queued", "sent", "answered", "batch")

    def __init__(self, key: K, future: asyncio.Future[V | None]) -> None:
        self.key = key
        self.future = future
        self.queued = time.perf_counter()
        self.sent = 0.0  # when its batch's fetch began
        self.answered = 0.0  # when its batch's fetch returned
        self.batch: Timings | None = None  # the batch's own stages (pool, query)


class Batcher(Generic[K, V]):
    """Collects lookups until `size` or a flush, then runs one fetch for all.

    With `interval` 0 a batch holds the lookups made within one event-loop iteration and is sent
    on the next (as DataLoader does): a lone lookup waits for nothing, while under load every
    iteration serves many requests and their lookups share one query. With `interval` > 0 the
    first lookup waits up to that long for company.
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        size: int = 50,
        interval: float = 0.1,
        max_pending: int = 10_000,
        overflow: str = "fallback",
    ) -> None:
        if size < 1 or interval < 0 or max_pending < 1:
            raise ValueError("size and max_pending must be >= 1 and interval >= 0")
        if overflow not in OVERFLOW_ACTIONS:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_ACTIONS)}")
        self.fetch = fetch
        self.size = size
        self.interval = interval
        self.max_pending = max_pending
        self.overflow = overflow
        self._queue: list[_Lookup[K, V]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = 0  # lookups waiting for an answer: queued or in a running batch

    async def load(self, key: K) -> V | None:
        """The value for key (None when the fetch did not return it)."""
        if self.pending >= self.max_pending:
            if self.overflow == "reject":
                metrics.BATCH_FALLBACKS.labels("reject").inc()
                raise BatcherFull(f"{self.pending} lookups pending (max {self.max_pending})")
            # Beyond the bound we stop queueing: the lookup runs on its own.
            metrics.BATCH_FALLBACKS.labels("fallback").inc()
            return (await self.fetch([key])).get(key)
        loop = asyncio.get_running_loop()
        lookup: _Lookup[K, V] = _Lookup(key, loop.create_future())
        self._queue.append(lookup)
        self.pending += 1
        try:
            if len(self._queue) >= self.size:
                self._flush()
            elif self._timer is None:
                self._timer = self._schedule(loop)
            return await lookup.future
        finally:
            self.pending -= 1
            timings = anatomy.current()
            if timings is not None and lookup.sent:
                timings.add(Stage.BATCHER, lookup.sent - lookup.queued)
                if lookup.batch is not None:
                    timings.merge(lookup.batch)  # this request waited for the batch's query too
                if lookup.answered:  # answered, this task waited for the loop to run it again
                    timings.add(Stage.QUEUE, time.perf_counter() - lookup.answered)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle | asyncio.Handle:
        if self.interval == 0:
            return loop.call_soon(self._flush)
        return loop.call_later(self.interval, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue = self._queue[: self.size], self._queue[self.size :]
        loop = asyncio.get_running_loop()
        if self._queue:
            self._timer = self._schedule(loop)
        if not batch:
            return
        # A task of its own, timed apart (anatomy timings are per task): the batch's stages belong
        # to all its lookups, not to the request whose lookup happened to trigger the flush.
        task = loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Lookup[K, V]]) -> None:
        keys = list(dict.fromkeys(lookup.key for lookup in batch))
        metrics.BATCH_SIZE.observe(len(keys))
        timings = anatomy.begin()
        sent = time.perf_counter()
        for lookup in batch:
            lookup.sent, lookup.batch = sent, timings
        try:
            found = await self.fetch(keys)
        except Exception as exc:
            for lookup in batch:
                if not lookup.future.done():
                    lookup.future.set_exception(exc)
            return
        finally:
            anatomy.end()
        answered = time.perf_counter()
        for lookup in batch:
            lookup.answered = answered
            if not lookup.future.done():
                lookup.future.set_result(found.get(lookup.key))

    async def close(self) -> None:
        """Run what is queued and wait for running batches."""
        if self._queue:
            self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
