"""The workbench's own PostgreSQL schema (from service.schema), seeded by COPY; nothing else touched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable, DropTable

from service.schema import SCHEMA, meta, metadata
from workbench._aio import run_sync
from workbench._errors import StackError

SEED_VERSION = "1"
OWNER = "fastapi-workbench"
"""The value of the `created_by` marker row: the workbench created the schema and may reseed it."""
COUNTRIES = ("IT", "DE", "FR", "ES", "US", "GB", "NL", "SE", "PL", "PT")
THEMES = ("light", "dark", "system")
LANGUAGES = ("it", "en", "de", "fr", "es")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_LOCK = 0x77_6F_72_6B_62_65_6E_63  # pg_advisory_xact_lock key: one seeder at a time per database
_DIALECT = postgresql.dialect()
_TABLES = [t for t in metadata.sorted_tables if t is not meta]  # parents first
CONNECT_TIMEOUT_S = 5.0
# Every statement of the workbench's own is bounded: a frozen server, or a lock held elsewhere,
# ends in TimeoutError instead of a hang. COPY gets this plus time for its rows on a slow disk.
QUERY_TIMEOUT_S = 30.0
COPY_ROWS_PER_S = 20_000


class ForeignSchemaError(StackError):
    """The database holds a `workbench` schema the workbench did not create: it is left alone."""


def ddl() -> list[str]:
    """CREATE TABLE statements of the seeded tables, compiled from service.schema (parents first)."""
    return [str(CreateTable(t).compile(dialect=_DIALECT)) for t in _TABLES]


def _drop_ddl() -> list[str]:
    return [str(DropTable(t, if_exists=True).compile(dialect=_DIALECT)) for t in reversed(_TABLES)]


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
    """How many users the workbench schema holds from our seed, or None when it is not seeded.

    Raises ForeignSchemaError when a `workbench` schema exists that the workbench did not create.
    """
    return run_sync(_seeded_users(url))


async def _seeded_users(url: str) -> int | None:
    conn = await connect(url)
    try:
        return await _state(conn)
    finally:
        await conn.close()


async def _state(conn: asyncpg.Connection) -> int | None:
    """The seeded user count; None when the schema is absent or ours but not seeded."""
    if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", SCHEMA):
        return None
    marker = meta.fullname
    database = await conn.fetchval("SELECT current_database()")  # asked before a query can fail
    try:
        owner, value = None, None
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", marker):
            rows = dict(await conn.fetch(f"SELECT key, value FROM {marker}"))
            owner, value = rows.get("created_by"), rows.get("seed")
    except asyncpg.PostgresError:  # a table of that name but not ours (other columns)
        owner = None
    if owner != OWNER:
        raise ForeignSchemaError(
            f'database "{database}" already has a schema "{SCHEMA}" that the workbench did not '
            f"create (no {marker} marker written by it), so the workbench will neither seed nor "
            f"change it. Point DATABASE_URL at another database, or, if that schema is "
            f'disposable, drop it yourself (DROP SCHEMA "{SCHEMA}" CASCADE) and start again.'
        )
    if not value or not value.startswith(SEED_VERSION + ":"):
        return None
    return int(value.split(":", 1)[1])


def seed(
    url: str,
    *,
    users: int,
    statement_stats: bool = False,
    progress: Callable[[str], None] = print,
) -> bool:
    """Create the workbench schema and load `users` users (+ profiles, settings); False when
    already there. Only objects inside the schema are created or dropped; statement_stats also
    creates the pg_stat_statements extension (for a server the workbench started itself)."""
    return run_sync(_seed(url, users, statement_stats=statement_stats, progress=progress))


async def _seed(
    url: str, users: int, *, statement_stats: bool, progress: Callable[[str], None]
) -> bool:
    conn = await connect(url)
    timeout = QUERY_TIMEOUT_S + users / COPY_ROWS_PER_S
    try:
        if statement_stats:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if await _state(conn) == users:
            return False
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
                state = await _state(conn)  # another process may have seeded while we waited
                if state == users:
                    return False
                progress(f"seeding {users:,} users (COPY) ...")
                if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", SCHEMA):
                    await conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
                    await conn.execute(str(CreateTable(meta).compile(dialect=_DIALECT)))
                    await conn.execute(
                        f"INSERT INTO {meta.fullname} VALUES ('created_by', $1)", OWNER
                    )
                for statement in [*_drop_ddl(), *ddl()]:
                    await conn.execute(statement)
                await conn.copy_records_to_table(
                    "users",
                    records=(user_row(i) for i in range(1, users + 1)),
                    schema_name=SCHEMA,
                    timeout=timeout,
                )
                await conn.copy_records_to_table(
                    "profiles", records=_profiles(users), schema_name=SCHEMA, timeout=timeout
                )
                await conn.copy_records_to_table(
                    "settings", records=_settings(users), schema_name=SCHEMA, timeout=timeout
                )
                await conn.execute(
                    f"INSERT INTO {meta.fullname} VALUES ('seed', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    f"{SEED_VERSION}:{users}",
                )
        except asyncpg.PostgresError as exc:
            raise StackError(
                f'could not create or seed the workbench\'s tables in schema "{SCHEMA}": '
                f"{type(exc).__name__}: {exc}"
            ) from None
        await conn.execute("ANALYZE " + ", ".join(t.fullname for t in _TABLES), timeout=timeout)
    finally:
        await conn.close()
    return True


def max_connections(url: str) -> int:
    """The database's max_connections setting."""

    async def fetch() -> int:
        conn = await connect(url)
        try:
            return int(await conn.fetchval("SHOW max_connections"))
        finally:
            await conn.close()

    return run_sync(fetch())
