"""Seed: the workbench's tables live in a schema of its own; a user's database is never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.schema import SCHEMA
from workbench._aio import run_sync
from workbench.seed import ForeignSchemaError, ddl, seed, seeded_users
from workbench.stack import Stack

USER_TABLES = """
CREATE TABLE public.users (id bigint PRIMARY KEY, login text NOT NULL);
CREATE TABLE public.profiles (user_id bigint PRIMARY KEY REFERENCES public.users(id), bio text);
CREATE TABLE public.settings (user_id bigint PRIMARY KEY, theme text);
CREATE TABLE public.workbench_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO public.users VALUES (1, 'alice'), (2, 'bob'), (7, 'carol');
INSERT INTO public.profiles VALUES (1, 'real data'), (7, 'more real data');
INSERT INTO public.settings VALUES (2, 'solarized');
INSERT INTO public.workbench_meta VALUES ('seed', '1:3');
"""


def _sql(url: str, *statements: str) -> list[list[Any]]:
    async def go() -> list[list[Any]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [[tuple(r) for r in await conn.fetch(s)] for s in statements]
        finally:
            await conn.close()

    return run_sync(go())


def _execute(url: str, *scripts: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            for script in scripts:
                await conn.execute(script)
        finally:
            await conn.close()

    run_sync(go())


@contextmanager
def _database(stack: Stack) -> Iterator[str]:
    """A fresh database on the session's server, standing for a user's own; its URL."""
    name = f"userdb_{uuid.uuid4().hex[:8]}"
    _execute(stack.url, f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(stack.url)._replace(path=f"/{name}"))
    finally:
        _execute(stack.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _outside(url: str, schema: str = SCHEMA) -> dict[str, Any]:
    """Everything outside `schema`: tables and columns, every row of them, and extensions."""
    columns = _sql(
        url,
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema NOT IN ('pg_catalog', 'information_schema', '{schema}') "
        "ORDER BY 1, 2, ordinal_position",
    )[0]
    names = sorted({f"{s}.{t}" for s, t, *_ in columns})
    rows = _sql(url, *(f"SELECT * FROM {n} ORDER BY 1" for n in names)) if names else []
    extensions = _sql(url, "SELECT extname FROM pg_extension ORDER BY 1")[0]
    return {"columns": columns, **dict(zip(names, rows, strict=True)), "extensions": extensions}


def test_the_ddl_comes_from_the_services_schema() -> None:
    statements = ddl()
    assert [s.split("(")[0].split()[-1] for s in statements] == [
        f"{SCHEMA}.users", f"{SCHEMA}.profiles", f"{SCHEMA}.settings",
    ]  # fmt: skip
    assert f"REFERENCES {SCHEMA}.users (id)" in statements[1]


def test_a_users_own_tables_survive_attach_seed_and_reseed(stack: Stack) -> None:
    with _database(stack) as url:
        _execute(url, USER_TABLES)
        before = _outside(url)
        assert before["public.users"] == [
            (1, "alice"),
            (2, "bob"),
            (7, "carol"),
        ]  # public.users, as written
        attached = Stack(
            database_url=url, redis_url=stack.redis, upstream_url=stack.upstream_url, users=50,
            progress=lambda _: None,
        )  # fmt: skip
        with attached:
            assert seeded_users(url) == 50
        assert _outside(url) == before
        assert seed(url, users=80, progress=lambda _: None) is True  # another size: reseeded
        assert seed(url, users=80, progress=lambda _: None) is False
        assert _outside(url) == before
        counts = _sql(
            url,
            *(f"SELECT count(*) FROM {SCHEMA}.{t}" for t in ("users", "profiles", "settings")),
        )
        assert counts == [[(80,)], [(80,)], [(80,)]]


@pytest.mark.parametrize(
    "foreign",
    [
        # a schema of that name with tables of its own
        f"CREATE SCHEMA {SCHEMA}; CREATE TABLE {SCHEMA}.users (id bigint PRIMARY KEY, note text);"
        f"INSERT INTO {SCHEMA}.users VALUES (1, 'keep me');",
        # even with a marker table of that name, when the workbench did not write its marker
        f"CREATE SCHEMA {SCHEMA}; CREATE TABLE {SCHEMA}.workbench_meta (key text, value text);"
        f"INSERT INTO {SCHEMA}.workbench_meta VALUES ('seed', '1:10');",
    ],
    ids=["tables", "marker-table"],
)
def test_a_workbench_schema_it_did_not_create_is_refused(stack: Stack, foreign: str) -> None:
    with _database(stack) as url:
        _execute(url, USER_TABLES, foreign)
        before = _outside(url, schema="none")  # everything, the foreign schema included
        with pytest.raises(ForeignSchemaError) as info:
            Stack(
                database_url=url, redis_url=stack.redis, upstream_url=stack.upstream_url,
                users=10, progress=lambda _: None,
            ).start()  # fmt: skip
        message = str(info.value)
        assert f'schema "{SCHEMA}" that the workbench did not create' in message
        assert "another database" in message and f'DROP SCHEMA "{SCHEMA}" CASCADE' in message
        with pytest.raises(ForeignSchemaError):
            seed(url, users=10, progress=lambda _: None)
        assert _outside(url, schema="none") == before
