"""Database: engines, read/write split, bound parameters, autocommit reads, query counting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from service.db import Database
from service.settings import ServiceSettings
from workbench.seed import user_row
from workbench.stack import Stack


def _with_db(
    stack: Stack, settings: ServiceSettings, body: Callable[[Database], Awaitable[Any]]
) -> Any:
    async def scenario() -> Any:
        db = Database.create(settings, url=stack.url)
        try:
            return await body(db)
        finally:
            await db.dispose()

    return asyncio.run(scenario())


def _statement_calls(stack: Stack, statement: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(stack.url)
        try:
            value = await conn.fetchval(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = $1",
                statement,
            )
            return int(value)
        finally:
            await conn.close()

    return asyncio.run(count())


def test_read_split_gives_two_engines_with_their_own_pools(stack: Stack) -> None:
    async def body(db: Database) -> tuple[list[str], int, int]:
        return sorted(db.engines()), db.write.pool.size(), db.read.pool.size()  # type: ignore[attr-defined]

    split = ServiceSettings(read_split=True, pool_size=3, read_pool_size=7)
    assert _with_db(stack, split, body) == (["read", "write"], 3, 7)
    assert _with_db(stack, ServiceSettings(), body)[0] == ["write"]


def test_get_users_is_one_query_for_many_ids(stack: Stack) -> None:
    def queries() -> float:
        return sum(
            REGISTRY.get_sample_value("db_queries_total", {"engine": e}) or 0.0
            for e in ("read", "write")
        )

    async def body(db: Database) -> dict[int, dict[str, Any]]:
        return await db.get_users([1, 2, 3, 99_999])

    before = queries()
    rows = _with_db(stack, ServiceSettings(), body)
    assert queries() - before == 1
    assert sorted(rows) == [1, 2, 3]
    assert rows[2]["email"] == user_row(2)[2]


def test_user_detail_joins_three_tables(stack: Stack) -> None:
    async def body(db: Database) -> tuple[Any, Any]:
        return await db.get_user_detail(10), await db.get_user_detail(99_999)

    detail, missing = _with_db(stack, ServiceSettings(), body)
    assert missing is None
    assert detail["id"] == 10 and {"bio", "country", "theme", "notifications"} <= set(detail)


def test_update_only_accepts_name_and_email(stack: Stack) -> None:
    async def body(db: Database) -> None:
        with pytest.raises(ValueError, match="name, email"):
            await db.update_user(11, {"id": 12})
        with pytest.raises(ValueError):
            await db.update_user(11, {})
        assert await db.update_user(99_999, {"name": "nobody"}) is None

    _with_db(stack, ServiceSettings(), body)


def test_autocommit_reads_skip_begin_and_rollback(stack: Stack) -> None:
    async def reads(db: Database) -> None:
        for i in range(1, 21):
            await db.get_user(i)

    settings = ServiceSettings(read_split=True)
    before = _statement_calls(stack, "BEGIN")
    _with_db(stack, settings, reads)
    with_transactions = _statement_calls(stack, "BEGIN") - before
    before = _statement_calls(stack, "BEGIN")
    _with_db(stack, settings.replace(read_autocommit=True), reads)
    autocommit = _statement_calls(stack, "BEGIN") - before
    assert with_transactions >= 20
    assert autocommit == 0


def test_overflow_connections_are_opened_again_for_every_burst(stack: Stack) -> None:
    def opened() -> float:
        return REGISTRY.get_sample_value("db_connections_opened_total", {"engine": "write"}) or 0.0

    async def bursts(db: Database) -> None:
        for _ in range(3):  # 4 at once on a pool that keeps 1: 3 overflow connections each time
            await asyncio.gather(*(db.get_user(i) for i in range(1, 5)))

    before = opened()
    _with_db(stack, ServiceSettings(pool_size=1, max_overflow=3), bursts)
    # the kept connection once, then the overflow ones for each burst (closed on return)
    assert opened() - before >= 1 + 3 * 3


@pytest.mark.parametrize("generic", [False, True])
def test_generic_plans_are_set_on_every_engines_connections(stack: Stack, generic: bool) -> None:
    async def body(db: Database) -> list[str]:
        modes = []
        for engine in db.engines().values():
            async with engine.connect() as conn:
                modes.append((await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar_one())
        # the batched join answers the same either way
        rows = await db.get_user_details([5, 6, 7])
        assert sorted(rows) == [5, 6, 7] and rows[6]["theme"]
        return modes

    settings = ServiceSettings(read_split=True, generic_plans=generic)
    modes = _with_db(stack, settings, body)
    assert modes == ["force_generic_plan" if generic else "auto"] * 2
