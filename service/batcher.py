"""Request batcher: concurrent lookups by key collected into one query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from service import metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

OVERFLOW_ACTIONS = ("fallback", "reject")


class BatcherFull(RuntimeError):
    """The batcher's pending queue is full and overflow='reject'."""


class Batcher(Generic[K, V]):
    """Collects lookups for `interval` seconds or until `size`, then runs one fetch for all."""

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        size: int = 50,
        interval: float = 0.1,
        max_pending: int = 10_000,
        overflow: str = "fallback",
    ) -> None:
        if size < 1 or interval <= 0 or max_pending < 1:
            raise ValueError("size and max_pending must be >= 1 and interval > 0")
        if overflow not in OVERFLOW_ACTIONS:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_ACTIONS)}")
        self.fetch = fetch
        self.size = size
        self.interval = interval
        self.max_pending = max_pending
        self.overflow = overflow
        self._queue: list[tuple[K, asyncio.Future[V | None]]] = []
        self._timer: asyncio.TimerHandle | None = None
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
        future: asyncio.Future[V | None] = loop.create_future()
        self._queue.append((key, future))
        self.pending += 1
        try:
            if len(self._queue) >= self.size:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self.interval, self._flush)
            return await future
        finally:
            self.pending -= 1

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue = self._queue[: self.size], self._queue[self.size :]
        if self._queue:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[V | None]]]) -> None:
        keys = list(dict.fromkeys(key for key, _ in batch))
        metrics.BATCH_SIZE.observe(len(keys))
        try:
            found = await self.fetch(keys)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for key, future in batch:
            if not future.done():
                future.set_result(found.get(key))

    async def close(self) -> None:
        """Run what is queued and wait for running batches."""
        if self._queue:
            self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
