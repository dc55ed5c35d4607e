"""Schema and seed data: users, profiles and settings, loaded by COPY."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg

from workbench._aio import run_sync

SEED_VERSION = "1"
COUNTRIES = ("IT", "DE", "FR", "ES", "US", "GB", "NL", "SE", "PL", "PT")
THEMES = ("light", "dark", "system")
LANGUAGES = ("it", "en", "de", "fr", "es")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
CONNECT_TIMEOUT_S = 5.0
# Every statement of the workbench's own is bounded: a frozen server, or a lock held elsewhere,
# ends in TimeoutError instead of a hang. COPY gets this plus time for its rows on a slow disk.
QUERY_TIMEOUT_S = 30.0
COPY_ROWS_PER_S = 20_000

DDL = """
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE IF NOT EXISTS workbench_meta (key text PRIMARY KEY, value text NOT NULL);
DROP TABLE IF EXISTS settings, profiles, users;
CREATE TABLE users (
    id bigint PRIMARY KEY,
    name varchar(100) NOT NULL,
    email varchar(200) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE profiles (
    user_id bigint PRIMARY KEY REFERENCES users(id),
    bio text NOT NULL,
    country varchar(2) NOT NULL,
    score integer NOT NULL
);
CREATE TABLE settings (
    user_id bigint PRIMARY KEY REFERENCES users(id),
    theme varchar(20) NOT NULL,
    language varchar(10) NOT NULL,
    notifications boolean NOT NULL
);
"""


def user_row(i: int) -> tuple[int, str, str, datetime, datetime]:
    """The seeded users row for id i (deterministic, so tests can predict it)."""
    created = _EPOCH + timedelta(seconds=i)
    return i, f"User {i}", f"user{i}@example.com", created, created


def _profiles(n: int) -> Iterator[tuple[int, str, str, int]]:
    for i in range(1, n + 1):
        yield i, f"Bio of user {i}: " + "lorem ipsum " * 4, COUNTRIES[i % 10], (i * 7919) % 1000


def _settings(n: int) -> Iterator[tuple[int, str, str, bool]]:
    for i in range(1, n + 1):
        yield i, THEMES[i % 3], LANGUAGES[i % 5], i % 2 == 0


async def connect(url: str, *, query_timeout: float = QUERY_TIMEOUT_S) -> asyncpg.Connection:
    """A connection whose opening and every statement are bounded in time."""
    return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, command_timeout=query_timeout)


def seeded_users(url: str) -> int | None:
    """How many users the database holds from our seed, or None when it is not seeded."""
    return run_sync(_seeded_users(url))


async def _seeded_users(url: str) -> int | None:
    conn = await connect(url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('workbench_meta') IS NOT NULL")
        if not exists:
            return None
        value = await conn.fetchval("SELECT value FROM workbench_meta WHERE key = 'seed'")
    finally:
        await conn.close()
    if not value or not value.startswith(SEED_VERSION + ":"):
        return None
    return int(value.split(":", 1)[1])


def seed(url: str, *, users: int, progress: Callable[[str], None] = print) -> bool:
    """Create the schema and load `users` users (+ profiles, settings); False when already there."""
    if seeded_users(url) == users:
        return False
    progress(f"seeding {users:,} users (COPY) ...")
    run_sync(_seed(url, users))
    return True


async def _seed(url: str, users: int) -> None:
    conn = await connect(url)
    try:
        async with conn.transaction():
            await conn.execute(DDL)
            timeout = QUERY_TIMEOUT_S + users / COPY_ROWS_PER_S
            await conn.copy_records_to_table(
                "users", records=(user_row(i) for i in range(1, users + 1)), timeout=timeout
            )
            await conn.copy_records_to_table("profiles", records=_profiles(users), timeout=timeout)
            await conn.copy_records_to_table("settings", records=_settings(users), timeout=timeout)
            await conn.execute(
                "INSERT INTO workbench_meta VALUES ('seed', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                f"{SEED_VERSION}:{users}",
            )
        await conn.execute("ANALYZE users, profiles, settings", timeout=timeout)
    finally:
        await conn.close()


def max_connections(url: str) -> int:
    """The database's max_connections setting."""

    async def fetch() -> int:
        conn = await connect(url)
        try:
            return int(await conn.fetchval("SHOW max_connections"))
        finally:
            await conn.close()

    return run_sync(fetch())
