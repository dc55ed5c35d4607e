"""The request batcher: one query for many concurrent lookups, bounded pending queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from service.batcher import Batcher, BatcherFull
from service.db import Database
from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.seed import user_row
from workbench.stack import Stack

LOOKUPS = 50


class CountingFetch:
    """A fetch over real PostgreSQL that records every batch it is asked for."""

    def __init__(self, db: Database, *, delay: float = 0.0) -> None:
        self.db = db
        self.delay = delay
        self.batches: list[list[int]] = []

    async def __call__(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        self.batches.append(list(ids))
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.db.get_users(ids)


def _run_with_db(stack: Stack, body: Callable[[Database], Any]) -> Any:
    async def scenario() -> Any:
        db = Database.create(ServiceSettings(), url=stack.url)
        try:
            return await body(db)
        finally:
            await db.dispose()

    return asyncio.run(scenario())


def test_concurrent_lookups_share_one_query(stack: Stack) -> None:
    async def body(db: Database) -> None:
        fetch = CountingFetch(db)
        batcher = Batcher(fetch, size=100, interval=0.01)
        ids = [*range(1, LOOKUPS + 1), 1, 2, 5000]  # duplicates and one unknown id
        rows = await asyncio.gather(*(batcher.load(i) for i in ids))
        assert len(fetch.batches) == 1
        assert sorted(fetch.batches[0]) == sorted(set(ids))
        assert rows[-1] is None
        for i, row in zip(ids[:-1], rows[:-1], strict=True):
            assert row is not None and (row["id"], row["name"]) == user_row(i)[:2]

    _run_with_db(stack, body)


def test_a_full_batch_flushes_before_the_interval(stack: Stack) -> None:
    async def body(db: Database) -> None:
        fetch = CountingFetch(db)
        batcher = Batcher(fetch, size=10, interval=30.0)  # only size can flush in time
        rows = await asyncio.wait_for(
            asyncio.gather(*(batcher.load(i) for i in range(1, 31))), timeout=5
        )
        assert [len(b) for b in fetch.batches] == [10, 10, 10]
        assert all(row is not None for row in rows)

    _run_with_db(stack, body)


def test_beyond_max_pending_lookups_fall_back_or_are_rejected(stack: Stack) -> None:
    async def body(db: Database) -> None:
        fetch = CountingFetch(db, delay=0.05)
        batcher = Batcher(fetch, size=100, interval=0.01, max_pending=5)
        rows = await asyncio.gather(*(batcher.load(i) for i in range(1, 21)))
        assert all(row is not None for row in rows)
        assert sorted(len(b) for b in fetch.batches) == [1] * 15 + [5]

        strict = Batcher(
            CountingFetch(db, delay=0.05), interval=0.01, max_pending=5, overflow="reject"
        )
        results = await asyncio.gather(
            *(strict.load(i) for i in range(1, 11)), return_exceptions=True
        )
        assert sum(isinstance(r, BatcherFull) for r in results) == 5
        assert sum(isinstance(r, dict) for r in results) == 5

    _run_with_db(stack, body)


def test_a_failing_fetch_fails_every_waiting_lookup() -> None:
    async def broken(ids: list[int]) -> dict[int, str]:
        raise RuntimeError("database down")

    async def scenario() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(broken, interval=0.01)
        return await asyncio.gather(*(batcher.load(i) for i in range(3)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_bad_options_are_rejected() -> None:
    async def fetch(ids: list[int]) -> dict[int, int]:
        return {}

    with pytest.raises(ValueError, match="overflow"):
        Batcher(fetch, overflow="drop")
    with pytest.raises(ValueError, match="size"):
        Batcher(fetch, size=0)


@pytest.mark.slow
@pytest.mark.parametrize(("batcher", "most"), [(True, 5), (False, LOOKUPS)])
def test_service_issues_few_queries_with_batcher_and_one_per_lookup_without(
    stack: Stack, batcher: bool, most: int
) -> None:
    settings = ServiceSettings(batcher=batcher, batch_size=LOOKUPS, batch_flush_interval=0.1)
    with ServiceProcess(settings, stack) as svc:
        before = _user_lookups(stack)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
                return await asyncio.gather(
                    *(client.get(f"/users/{i}") for i in range(201, 201 + LOOKUPS))
                )

        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [200] * LOOKUPS
        assert [a.json()["id"] for a in answers] == list(range(201, 201 + LOOKUPS))
        queries = _user_lookups(stack) - before
        if batcher:
            assert 1 <= queries <= most
        else:
            assert queries == LOOKUPS


def _user_lookups(stack: Stack) -> int:
    """Executions of user lookups by id (single or ANY) according to pg_stat_statements."""

    async def count() -> int:
        conn = await asyncpg.connect(stack.url)
        try:
            value = await conn.fetchval(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query LIKE 'SELECT workbench.users.id, workbench.users.name%FROM workbench.users%WHERE workbench.users.id = %'"
            )
            return int(value)
        finally:
            await conn.close()

    return asyncio.run(count())
